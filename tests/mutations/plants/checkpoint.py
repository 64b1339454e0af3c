"""Plants in checkpoint verification and restricted loading (issue 17): manifest coverage, other ranks' shards,
the unpicklers' allow-lists."""

from __future__ import annotations

from plant import Plant

MANIFEST_PY = "megatron_biomed/checkpoint/manifest.py"
LOAD = "megatron_biomed/checkpoint/load.py"
SAFE_LOAD = "megatron_biomed/checkpoint/safe_load.py"
SAFETY = "tests/checkpoint/test_checkpoint_safety.py"
EVERY_FILE = "tests/checkpoint/test_every_file_verified.py"
UNPICKLER = "tests/checkpoint/test_restricted_unpickler.py"

PLANTS = [
    Plant(
        "manifest-leaves-out-metadata",
        "the save's manifest does not list .metadata (a damaged one would be read unverified)",
        [(MANIFEST_PY, "and p.name != MANIFEST\n    )", 'and p.name not in (MANIFEST, ".metadata")\n    )')],
        [SAFETY + "::test_our_checkpoint_verifies", EVERY_FILE],
    ),
    Plant(
        "verify-skips-other-ranks-shards",
        "verification checks only rank 0's shards (and the shared files)",
        [
            (
                LOAD,
                "names=names[rank() :: world_size()]",
                'names=[n for n in names if not n.startswith("__") or n.startswith("__0_")][rank() :: world_size()]',
            )
        ],
        [EVERY_FILE],
    ),
    Plant(
        "manifest-own-checksum-unchecked",
        "a damaged manifest.json is read as long as it parses (blaming the file it now mis-describes)",
        [(MANIFEST_PY, 'if version >= 2 and body["checksum"] != _own_checksum(body):', "if False:")],
        [EVERY_FILE],
    ),
    Plant(
        "metadata-admits-getattr",
        "the .metadata allow-list admits builtins.getattr (a gadget reaching any attribute)",
        [
            (
                SAFE_LOAD,
                '        ("collections", "OrderedDict"),\n    }',
                '        ("collections", "OrderedDict"),\n        ("builtins", "getattr"),\n    }',
            )
        ],
        [UNPICKLER + "::test_the_allow_lists_are_exactly_these"],
        fast=True,
    ),
    Plant(
        "dtype-rule-admits-all-of-torch",
        "the torch dtype/layout rule admits every callable of torch (torch.load, torch.from_file...)",
        [
            (
                SAFE_LOAD,
                "if isinstance(value, (torch.dtype, torch.layout))",
                "if callable(value) or isinstance(value, (torch.dtype, torch.layout))",
            )
        ],
        [
            UNPICKLER + "::test_the_allow_lists_are_exactly_these",
            UNPICKLER + "::test_gadgets_in_metadata_are_refused_before_anything_runs",
        ],
    ),
    Plant(
        "object-items-not-scanned",
        "non-tensor items go straight to torch.load(weights_only=True), whose allow-list megatron-core widens",
        [(SAFE_LOAD, "        if (module, name) not in OBJECT_GLOBALS:\n", "        if False:\n")],
        [UNPICKLER + "::test_gadgets_in_the_common_state_are_refused_before_anything_runs"],
    ),
]
