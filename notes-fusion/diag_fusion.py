"""Ad-hoc: fusion selection on a saved (unfused) checkpoint; validation grid + test."""
import sys, json, logging
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.features import default_cache_dir
from promptrec.encoder.model import load_model
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.offline import prepare
from promptrec.evaluation.fusion import select_fusion
from promptrec.evaluation.protocol import stage_ranks, metrics_from_ranks
ckpt, data, fmt = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
prep = prepare(data, fmt, EncoderSettings(), default_cache_dir(), profiles=True, progress=False)
model = load_model(ckpt)
prof = prep.profiles if model.config.profile_dim else None
base = metrics_from_ranks(stage_ranks(ModelScorer(model, prep.text, prep.split.item_ids, prof), prep.split, "test"))
chosen = select_fusion(model, prep.split, prep.text, prof)
fused = metrics_from_ranks(stage_ranks(ModelScorer(model, prep.text, prep.split.item_ids, prof), prep.split, "test"))
print(json.dumps({k: v for k, v in chosen.items() if k != "valid_ndcg10_grid"}, indent=1))
print(json.dumps(chosen["valid_ndcg10_grid"]))
print("test unfused NDCG@10 %.4f HR@10 %.4f" % (base["NDCG@10"], base["HR@10"]))
print("test fused   NDCG@10 %.4f HR@10 %.4f" % (fused["NDCG@10"], fused["HR@10"]))
