# The end every launcher in examples/ shares: print the plan (a dry run), or start the job with torchrun (the
# .sh launchers) or srun (the .sbatch ones). Sourced (not run) after the launcher has set REPO_DIR,
# CHECKPOINT_DIR, TENSORBOARD_DIR and the RECIPE, LAYOUT, DATA and OUTPUTS argument arrays; then
# `launch_torchrun tools/<tool>.py "$@"` or `launch_srun tools/<tool>.py "$@"` runs the job, with the
# launcher's own arguments last (they win).
#
# DRY_RUN=1 or a --dry-run argument: print the plan for the planned world size and stop (no torchrun, no SLURM,
# no GPU). The machines: torchrun starts NPROC_PER_NODE processes on this node, one of NNODES (run the launcher
# on every node with its NODE_RANK and the same MASTER_ADDR); srun starts GPUS_PER_NODE tasks on every node of
# the allocation, and outside SLURM the plan is for NNODES nodes (the launcher defaults it to its #SBATCH --nodes).

PYTHON="${PYTHON:-python}"

# The dry run: when DRY_RUN=1 or an argument asks for it, exec `python <tool> ... --world-size <world>` (which
# prints the plan) and never return; otherwise return at once.
plan_if_dry_run() {
  local tool="$1" world="$2"
  shift 2
  local dry=0 arg
  [[ "${DRY_RUN:-0}" == "1" ]] && dry=1
  for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && dry=1; done
  [[ "${dry}" == "1" ]] || return 0
  local extra=()
  [[ " $* " == *" --dry-run "* ]] || extra=(--dry-run)
  exec "${PYTHON}" "${tool}" "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" \
    --world-size "${world}" "${extra[@]}" "$@"
}

launch_torchrun() {
  local tool="$1"
  shift
  NNODES="${NNODES:-1}"
  NODE_RANK="${NODE_RANK:-0}"
  NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
  MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
  MASTER_PORT="${MASTER_PORT:-29500}"
  # A command, word-split on purpose: e.g. TORCHRUN="python -m torch.distributed.run".
  TORCHRUN="${TORCHRUN:-torchrun}"
  cd "${REPO_DIR}"
  plan_if_dry_run "${tool}" $((NNODES * NPROC_PER_NODE)) "$@"
  mkdir -p "${CHECKPOINT_DIR}" "${TENSORBOARD_DIR}"
  exec ${TORCHRUN} --nnodes "${NNODES}" --node-rank "${NODE_RANK}" --nproc-per-node "${NPROC_PER_NODE}" \
    --master-addr "${MASTER_ADDR}" --master-port "${MASTER_PORT}" \
    "${tool}" "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" "$@"
}

# One task per GPU; srun starts them and megatron_biomed.parallel.env reads SLURM_PROCID / SLURM_NTASKS /
# SLURM_LOCALID / SLURM_NODELIST (the first node is the rendezvous host). SUBMIT_COMMAND (default
# `sbatch <this launcher>`) is how the error outside SLURM says to submit.
#
# Preemption and resubmission. SLURM's warning signal (#SBATCH --signal=USR1@120: SIGUSR1 to every task 120 s,
# give or take slurmctld's periodic time-limit check, before the limit) or `scancel --signal=USR1 <job>` makes
# the trainer save at the next step boundary, leave CHECKPOINT_DIR/preempted.json (the iteration saved) and
# exit 0 (megatron_biomed/training/signals.py). After srun:
#   - RESUBMIT_ON_PREEMPT=1 (exported to the job): the job requeues itself (`scontrol requeue`, as
#     Lightning's SLURM auto-requeue does), keeping its id, options, arguments and log (--open-mode=append);
#     the next run resumes from CHECKPOINT_DIR. At most MAX_RESUBMITS (default 100) times
#     (SLURM_RESTART_COUNT). SLURM holds a requeued job for its credential lifetime before it starts again
#     (slurm.conf AuthInfo cred_expire, 120 s by default).
#   - otherwise the job ends (exit 0) with a line saying so: submit the same command again to resume.
# A trainer that fails exits non-zero and the job fails with it; that is never requeued.
launch_srun() {
  local tool="$1"
  shift
  # The allocation's nodes; outside SLURM (planning) NNODES.
  NNODES="${SLURM_JOB_NUM_NODES:-${NNODES:-1}}"
  GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
  cd "${REPO_DIR}"
  plan_if_dry_run "${tool}" $((NNODES * GPUS_PER_NODE)) "$@"
  if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    echo "error: not inside a SLURM job; submit with '${SUBMIT_COMMAND:-sbatch $0}'," \
      "or run with DRY_RUN=1 to print the plan" >&2
    exit 1
  fi
  # A port derived from the job id, so two jobs sharing a first node do not collide. The host is the
  # allocation's first node, which megatron_biomed.parallel.env takes from SLURM_NODELIST.
  export MASTER_PORT="${MASTER_PORT:-$((10000 + SLURM_JOB_ID % 20000))}"
  # A torchrun-style RANK/WORLD_SIZE left in the environment would win over SLURM's variables.
  unset RANK WORLD_SIZE LOCAL_RANK
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
  mkdir -p "${CHECKPOINT_DIR}" "${TENSORBOARD_DIR}"
  local marker="${CHECKPOINT_DIR}/preempted.json" status=0
  srun --ntasks-per-node="${GPUS_PER_NODE}" --kill-on-bad-exit=1 \
    "${PYTHON}" "${tool}" "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" "$@" || status=$?
  if [[ "${status}" != 0 || ! -f "${marker}" ]]; then
    return "${status}"
  fi
  local restarts="${SLURM_RESTART_COUNT:-0}"
  echo "job ${SLURM_JOB_ID}: the trainer stopped for preemption ($(cat "${marker}")); it resumes from" \
    "${CHECKPOINT_DIR}"
  if [[ "${RESUBMIT_ON_PREEMPT:-0}" != "1" ]]; then
    echo "job ${SLURM_JOB_ID}: submit the same command again to resume (or submit with RESUBMIT_ON_PREEMPT=1" \
      "to have the job requeue itself)"
  elif (( restarts >= ${MAX_RESUBMITS:-100} )); then
    echo "job ${SLURM_JOB_ID}: not requeued: it already ran ${restarts} times after the first" \
      "(MAX_RESUBMITS=${MAX_RESUBMITS:-100}); submit it again to go on" >&2
  else
    echo "job ${SLURM_JOB_ID}: requeueing (restart $((restarts + 1)); RESUBMIT_ON_PREEMPT=1)"
    # The requeue ends this batch script; the job runs again with the same id, options and arguments.
    if ! scontrol requeue "${SLURM_JOB_ID}"; then
      echo "job ${SLURM_JOB_ID}: scontrol requeue failed (is requeueing allowed here? #SBATCH --requeue," \
        "slurm.conf JobRequeue); submit the same command again to resume" >&2
      return 1
    fi
    sleep 300  # SLURM ends this script for the requeue
  fi
}
