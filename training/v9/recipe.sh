# The v9 U-Net run (#32), sourced by scripts/train_cpu.sh and scripts/gpu/train.sh: the flags of `traverse
# train-mini`, run in pieces, each resuming the last (training/v9/README.md has the log of pieces).
#
# It continues the v8 run where it stopped (U-Net step 31600, AdamW's state kept) with v8's data and draw, for
# 6000 steps more. v8's 6000 steps raised dermoscopy's mean CFRT from 0.58 to 0.70 on the same 30 subjects and
# its loss was still falling (training/v8/loss.csv: 0.0305 over steps 29600-30400, 0.0299 over 31200-31600),
# so this run asks whether more of the same training closes the rest of the gap before the recipe changes.
# What still fails (public/model/evaluation-derm.md): hair on both lesions (drawn as a branching network of
# short cracks rather than the phantoms' long strands, densest at the late swap points, where the bubble
# classifier and the diagnosis flip), ink and ruler on melanoma.
FLAGS=(
  # The shipped tokenizer, text encoder and autoencoder, taken over unchanged (their steps are done).
  --images 12000 --vae-steps 2000 --vae-decoder-steps 3000 --vae-attribute-weight 10
  # 6000 steps of batch 64 past v8's 31600.
  --unet-batch 64 --unet-steps 37600
  # The schedule is a function of the step and the total: the last quarter of 37600 steps starts at 28200, so
  # these steps run at 6.7e-5 falling to 1e-5 (v8 ended at 2e-5, from 2e-4).
  --unet-lr 1e-4
  # v8's draw: dermoscopy 0.7 of it, rare caption combinations more often.
  --unet-chest-share 0.3 --unet-caption-balance 0.5
  --checkpoint-every 200
)
