# The end every torchrun launcher in examples/ shares. Sourced (not run) after the launcher has set REPO_DIR,
# PYTHON, TORCHRUN, the machine variables (NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT,
# WORLD_SIZE_PLANNED), CHECKPOINT_DIR, TENSORBOARD_DIR and the RECIPE, LAYOUT, DATA and OUTPUTS argument
# arrays; then `launch tools/<tool>.py "$@"` runs the job, with the launcher's own arguments last (they win).
#
# DRY_RUN=1 or a --dry-run argument: print the plan for WORLD_SIZE_PLANNED ranks and stop (no torchrun, no
# GPU). Otherwise torchrun starts NPROC_PER_NODE processes on this node.

launch() {
  local tool="$1"
  shift
  local dry=0 arg
  [[ "${DRY_RUN:-0}" == "1" ]] && dry=1
  for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && dry=1; done
  cd "${REPO_DIR}"
  if [[ "${dry}" == "1" ]]; then
    local extra=()
    [[ " $* " == *" --dry-run "* ]] || extra=(--dry-run)
    exec "${PYTHON}" "${tool}" "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" \
      --world-size "${WORLD_SIZE_PLANNED}" "${extra[@]}" "$@"
  fi
  mkdir -p "${CHECKPOINT_DIR}" "${TENSORBOARD_DIR}"
  exec ${TORCHRUN} --nnodes "${NNODES}" --node-rank "${NODE_RANK}" --nproc-per-node "${NPROC_PER_NODE}" \
    --master-addr "${MASTER_ADDR}" --master-port "${MASTER_PORT}" \
    "${tool}" "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" "$@"
}
