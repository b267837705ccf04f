"""The training step and how it executes: eager, compiled, or captured as CUDA graphs.

buckets.py   static shapes: batches padded to a few lengths and a fixed number of rows, with
             zero-weight rows, so that loss and gradients equal the unpadded batch's
losses.py    the loss of each problem (classification, regression, causal LM), weighted by row
modes.py     which execution mode a run uses (`trainer.step`), and why
step.py      the step itself: forward, loss, backward, clipping, optimizer step, LR schedule,
             loss accumulation; shared by `python run.py` and the GPU benchmarks
"""
