"""lora_exp: reproduce and extend LoRA (Hu et al. 2021, arXiv:2106.09685).

The flow of data is one straight line:
config (Hydra) -> backbone (transformers) -> method.apply(backbone) -> LightningModule
-> Trainer.fit/test -> run record (record.json) -> reports.
"""

__version__ = "0.1.0"
