# Sourced by the scripts that move a training run about (scripts/train_cpu.sh, scripts/gpu/train.sh, pack.sh
# and fetch_train.sh): `run_step FILE` prints the step a stage's train_state.json has reached, and TRAINING names
# the run in progress: its folder holds the recipe (recipe.sh, the flags with the reasons) and receives each
# piece's loss log, plot, state and log.
TRAINING=training/v9
run_step() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['step'])" "$1"; }
# `keep_piece RUN`: after a piece, the run's loss log and plot, state and recipe go to $TRAINING/, and the recipe
# (the flags with their reasons) into the run folder, so that shipping it keeps them (ship_model.sh).
keep_piece() {
  cp "$1"/unet/{loss.csv,loss.svg,train_state.json} "$1/training.json" "$TRAINING/"
  cp "$TRAINING/recipe.sh" "$1/recipe.sh"
}
