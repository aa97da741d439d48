"""Ad-hoc: test metrics of a fused checkpoint with and without its fusion."""
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.features import default_cache_dir
from promptrec.encoder.model import load_model
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.offline import prepare
from promptrec.evaluation.protocol import stage_ranks
from promptrec.evaluation.report import uncertainty_report
from promptrec.evaluation.baselines import PopScorer, select_text_zero_shot
prep = prepare(Path(sys.argv[2]), sys.argv[3], EncoderSettings(), default_cache_dir(), profiles=True, progress=False)
m = load_model(Path(sys.argv[1])); prof = prep.profiles if m.config.profile_dim else None
r = {"promptrec": stage_ranks(ModelScorer(m, prep.text, prep.split.item_ids, prof), prep.split)}
m.fusion = None
r["promptrec-unfused"] = stage_ranks(ModelScorer(m, prep.text, prep.split.item_ids, prof), prep.split)
r["pop"] = stage_ranks(PopScorer(prep.split), prep.split)
r["promptrec-text-zero-shot"] = stage_ranks(select_text_zero_shot(prep.split, prep.text), prep.split)
from promptrec.evaluation.offline import format_table
print(format_table(uncertainty_report(r, "promptrec")))
