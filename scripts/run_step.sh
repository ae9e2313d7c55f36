# Sourced by the scripts that move a training run about (scripts/train_cpu.sh, scripts/gpu/pack.sh and
# fetch_train.sh): `run_step FILE` prints the step a stage's train_state.json has reached.
run_step() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['step'])" "$1"; }
