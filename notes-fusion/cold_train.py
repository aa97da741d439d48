"""Ad-hoc: train the strict cold-start (pre-cut) model of eval offline --cold-start 0.7, 20 epochs, save it."""
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.features import default_cache_dir
from promptrec.encoder.model import ModelConfig, save_model
from promptrec.encoder.training import TrainConfig, train_model
from promptrec.evaluation.offline import prepare, model_config
from promptrec.evaluation.cold_start import cold_start_split
data, fmt, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
prep = prepare(data, fmt, EncoderSettings(), default_cache_dir(), profiles=True, progress=False)
cs = cold_start_split(prep.dataset, 0.7)
config = model_config(prep, ModelConfig())
res = train_model(cs.split, prep.text, config, TrainConfig(epochs=20, negatives=256, progress=False), prep.profiles)
save_model(out, res.model, res.summary())
print(res.summary()["valid"]["NDCG@10"], res.best_epoch)
