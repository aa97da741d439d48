"""Ad-hoc: run_cold_start's exact code path on the saved pre-cut model (training replaced by loading it)."""
import sys, json
from pathlib import Path
import torch
torch.set_num_threads(1)
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.features import default_cache_dir
from promptrec.encoder.model import load_model, ModelConfig
from promptrec.encoder.training import TrainResult, TrainConfig
from promptrec.evaluation import cold_start as C
from promptrec.evaluation.offline import prepare, model_config, format_table
ckpt, data, fmt, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
prep = prepare(data, fmt, EncoderSettings(), default_cache_dir(), profiles=True, progress=False)
cs = C.cold_start_split(prep.dataset, 0.7)
side = json.loads(ckpt.with_suffix(".json").read_text())
C.train_model = lambda *a, **k: TrainResult(load_model(ckpt), side["best_epoch"], side["valid"], side["valid_ndcg10_curve"])
rep = C.run_cold_start(cs, prep.text, prep.profiles, model_config(prep, ModelConfig()), TrainConfig(epochs=20, negatives=256))
out.write_text(json.dumps(rep, indent=2))
print(format_table(rep))
for k in ("all", "balanced"):
    f = rep["fusion"][k]; print(k, {a: b for a, b in f.items() if "grid" not in a})
