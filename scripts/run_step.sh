# Sourced by the scripts that move a training run about (scripts/train_cpu.sh, scripts/gpu/train.sh, pack.sh
# and fetch_train.sh): `run_step FILE` prints the step a stage's train_state.json has reached, and TRAINING names
# the run in progress: its folder holds the recipe (recipe.sh, the flags with the reasons) and receives each
# piece's loss log, plot, state and log.
TRAINING=training/v9
run_step() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['step'])" "$1"; }
