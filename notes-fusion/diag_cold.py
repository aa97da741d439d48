"""Ad-hoc: strict cold start (q=0.7) on a saved pre-cut model: unfused, fused, calibrated."""
import sys, json
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.features import default_cache_dir
from promptrec.encoder.model import load_model
from promptrec.encoder.training import ModelScorer
from promptrec.evaluation.offline import prepare
from promptrec.evaluation.fusion import select_fusion
from promptrec.evaluation.cold_start import cold_start_split, RandomScorer
from promptrec.evaluation.baselines import PopScorer
from promptrec.evaluation.protocol import metrics_from_ranks
ckpt, data, fmt = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
prep = prepare(data, fmt, EncoderSettings(), default_cache_dir(), profiles=True, progress=False)
cs = cold_start_split(prep.dataset, 0.7)
model = load_model(ckpt)
text, prof = prep.text, prep.profiles
def show(name, ranks):
    m = metrics_from_ranks(ranks)
    print(f"{name:28s} HR@10 {m['HR@10']:.4f} NDCG@10 {m['NDCG@10']:.4f} HR@100 {np.mean(ranks<100):.4f} median rank {np.median(ranks):.0f}")
show("unfused", cs.ranks(ModelScorer(model, text, cs.split.item_ids, prof)))
show("pop", cs.ranks(PopScorer(cs.split)))
show("random", cs.ranks(RandomScorer(cs.split.n_items, 0)))
ch = select_fusion(model, cs.split, text, prof)
print({k: v for k, v in ch.items() if k != "valid_ndcg10_grid"})
show("fused", cs.ranks(ModelScorer(model, text, cs.split.item_ids, prof)))
# share of post-cut first events (any target) that target cold items
from promptrec.encoder.fusion import centred_text
from promptrec.evaluation.protocol import target_ranks
fus = model.fusion
a, d = fus.alpha, fus.decay
# nested: inner cut inside the pre-cut data
ts = np.array([e.ts for e in prep.dataset.interactions if e.ts < cs.cut_ts])
inner = int(np.quantile(ts, 0.7))
row = {i: n for n, i in enumerate(cs.split.item_ids)}
first = {}
for e in prep.dataset.interactions:
    first.setdefault(row[e.item_id], e.ts)
inner_cold = np.array([inner <= first.get(i, 1 << 62) < cs.cut_ts for i in range(cs.split.n_items)])
print("inner cold items", inner_cold.sum(), "cut", cs.cut_ts, "inner", inner)
def parts(ids, users, hists):
    model.fusion = None
    t_items = model.item_vectors(text, ids)
    z = centred_text(text, fus.mean)
    out_t, out_z = [], []
    for s in range(0, len(users), 256):
        h = hists[s:s+256]; u = users[s:s+256]
        tu = model.user_vectors([t_items[np.asarray(x, dtype=np.int64)] for x in h], prof[np.asarray(u)])
        zu = fus.text_users([z[np.asarray(x, dtype=np.int64)] for x in h])
        out_t.append(tu @ t_items.T); out_z.append(zu @ z.T)
    model.fusion = fus
    return np.concatenate(out_t), np.concatenate(out_z)
# validation with inner-cold IDs removed
vids = [("~" + i) if inner_cold[n] else i for n, i in enumerate(cs.split.item_ids)]
vt = cs.split.targets("valid"); vu = np.flatnonzero(vt >= 0); vh = [cs.split.train[u] for u in vu]
st, sz = parts(vids, vu, vh)
print("valid targets inner-cold share", inner_cold[vt[vu]].mean())
tt, tz = parts(cs.split.item_ids, np.asarray(cs.users), cs.histories)
for aa in (a,):
  for c in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6):
    v = target_ranks((1-aa)*st + aa*sz + c*inner_cold[None, :], vt[vu], vh)
    r = target_ranks((1-aa)*tt + aa*tz + c*cs.cold[None, :], cs.targets, cs.histories)
    mv = metrics_from_ranks(v); mt = metrics_from_ranks(r)
    print(f"alpha {aa} c {c}: valid NDCG@10 {mv['NDCG@10']:.4f} (inner-cold targets {metrics_from_ranks(v[inner_cold[vt[vu]]])['NDCG@10']:.4f}) | cold test HR@10 {mt['HR@10']:.4f} NDCG@10 {mt['NDCG@10']:.4f}")
print("--- within-cold ranking (target among cold items only)")
cold_idx = np.flatnonzero(cs.cold)
def within(S):
    S = S[:, cold_idx]
    pos = np.searchsorted(cold_idx, cs.targets)
    hist_c = [[int(np.searchsorted(cold_idx, x)) for x in h if cs.cold[x]] for h in cs.histories]
    r = target_ranks(S, pos, hist_c)
    return f"HR@10 {np.mean(r<10):.4f} median {np.median(r):.0f} of {len(cold_idx)}"
print("trained (text-only adapter):", within(tt))
print("zero-shot cos_z:", within(tz))
print("fused:", within((1-a)*tt + a*tz))
print("random:", within(np.random.default_rng(0).random(tt.shape)))
# popularity of cold items after the cut (not legal, just to see concentration)
from collections import Counter
cnt = Counter(int(t) for t in cs.targets)
print("distinct cold targets", len(cnt), "top5 share", sum(c for _, c in cnt.most_common(5))/len(cs.targets))
print([cs.split.item_ids[i] + ":" + prep.dataset.items[i].title for i, _ in cnt.most_common(5)])
print("--- cold items = no training interaction (no ID vector); text path alone + bias, chosen on valid")
vcold = cs.split.train_counts() == 0
print("valid-cold items", vcold.sum(), "valid targets that are cold", vcold[vt[vu]].sum(), "of", len(vu))
st0, sz0 = parts(cs.split.item_ids, vu, vh)
for lam in (1.0, 2.0, 3.0):
  for c in (0.0, 0.1, 0.2, 0.3, 0.4):
    def sc(S_t, S_z, cold):
        S = (1-a)*S_t + a*S_z
        return np.where(cold[None, :], lam*a*S_z + c, S)
    v = target_ranks(sc(st0, sz0, vcold), vt[vu], vh)
    r = target_ranks(sc(tt, tz, cs.cold), cs.targets, cs.histories)
    mv = metrics_from_ranks(v); mt = metrics_from_ranks(r)
    print(f"lam {lam} c {c}: valid NDCG@10 {mv['NDCG@10']:.4f} | cold test HR@10 {mt['HR@10']:.4f} NDCG@10 {mt['NDCG@10']:.4f}")
print("--- nested: inner-cold items (first seen in the last 30% of pre-cut time) scored as cold (z alone + bias)")
for lam in (1.0, 2.0, 3.0):
  for c in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
    def sc(S_t, S_z, cold):
        S = (1-a)*S_t + a*S_z
        return np.where(cold[None, :], lam*a*S_z + c, S)
    v = target_ranks(sc(st0, sz0, inner_cold), vt[vu], vh)
    r = target_ranks(sc(tt, tz, cs.cold), cs.targets, cs.histories)
    mv = metrics_from_ranks(v); mt = metrics_from_ranks(r)
    print(f"lam {lam} c {c}: valid NDCG@10 {mv['NDCG@10']:.4f} | cold test HR@10 {mt['HR@10']:.4f} NDCG@10 {mt['NDCG@10']:.4f}")
