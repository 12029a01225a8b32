"""Training soft prompts on a few labelled examples, the model frozen by default: the settings and results
(:mod:`.config`), a step's loss and schedule (:mod:`.optimisation`) and the training loop, several prompts in the same steps (:mod:`.loop`)."""

from .config import DEFAULT_MODEL_LR, TrainConfig, TrainingDiverged, TrainingLoss, TrainResult
from .loop import train_prompt, train_prompts
from .optimisation import linear_warmup_schedule, readout_loss, readout_loss_rows, validation_loss

__all__ = ["DEFAULT_MODEL_LR", "TrainConfig", "TrainResult", "TrainingDiverged", "TrainingLoss", "linear_warmup_schedule",
           "readout_loss", "readout_loss_rows", "train_prompt", "train_prompts", "validation_loss"]
