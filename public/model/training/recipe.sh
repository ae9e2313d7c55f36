# The v8 U-Net run (#32), sourced by scripts/gpu/train.sh: the flags of `traverse train-mini`, run on a lent GPU
# machine in pieces of a few minutes, each resuming the last (training/v8/README.md has the log of pieces).
#
# It continues the shipped v7 U-Net (step 25600 of batch 16) rather than starting over: v7's chest attributes
# already pass (CFRT 0.86 and 1.00 on 278 subjects), and its dermoscopy swaps mostly fail on side effects, other
# artifacts appearing or vanishing beside the one asked for (public/model/evaluation-derm.md), which calls for
# more, and more varied, dermoscopy training, not a new model.
FLAGS=(
  # The shipped tokenizer, text encoder and autoencoder, taken over unchanged (their steps are done).
  --images 12000 --vae-steps 2000 --vae-decoder-steps 3000 --vae-attribute-weight 10
  # Twice v7's pool: 6000 dermoscopy subjects instead of 3000, so each artifact is seen on more lesions
  # (the pool's first 6000 phantoms are v7's).
  # Batch 64 keeps a GPU busy (v7 trained with 16 on the CPU); 6000 steps of it are 384k samples, about as
  # many as v1–v7's U-Net saw in all.
  --unet-batch 64 --unet-steps 31600
  # The schedule is a function of the step and the total: from step 25600 these steps run at 1.6e-4 falling
  # to 2e-5 over the last quarter (4 times v7's batch, so a larger rate than its 5e-5).
  --unet-lr 2e-4
  # Dermoscopy gets 0.7 of the draws (v7 had 0.5), and rare caption combinations come up more often.
  --unet-chest-share 0.3 --unet-caption-balance 0.5
  --checkpoint-every 200
)
