"""Screen TextAttentionClassifier settings on validation splits of the training data.

Issue #4: choose the settings of ``bench_text.py`` without reading any of its
test splits (SST-2 dev, the SMS test part, AG News test). TREC, MR and Subj
are held out and never read. The validation splits, fixed before any result
was seen:

* SST-2: the training set is mostly short phrases while dev is full
  sentences, so a random split of train is unrepresentative (~91 %). The
  validation set is 2,000 items drawn (seed 0, stratified) from the training
  items of at least 20 tokens (7,078 of 67,349; dev sentences average ~19);
  the fitting set is every other training item, except those whose token
  sequence is a contiguous span of a validation item (sub-phrases of a
  held-out sentence, which GLUE train holds and dev's sentences never have).
* SMS spam: the benchmark's 80 % training part (seed 0), split again 80/20
  (stratified, seed 0).
* AG News: ``train_sample.tsv`` split 80/20 (stratified, seed 0).

Each candidate is fitted with ``random_state`` 0..k-1 on the fitting set; the
report gives seed 0's validation accuracy, the mean and range over the seeds,
and the accuracy of the soft-voting ensembles of the first 3 and of all the
seeds (the mean of their ``predict_proba``, which is what
``VotingClassifier(voting="soft")`` computes). The TF-IDF row is the
baseline with its best ``C`` of (1, 3, 10, 30) on the same validation split
(so slightly optimistic for the baseline).

Results are cached per (set, candidate, seed) in ``--cache`` (a JSON file
outside the repository) so runs can be split; the report is written from all
cached results to ``benchmarks/results_text_screen.md``.

Usage::

    PYTHONPATH=. python benchmarks/screen_text.py --n-jobs 1 [--sets sst2 sms ag]
        [--candidates current cosine15] [--seeds 5]
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.model_selection import train_test_split

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_text import SETTINGS, _read, _tfidf  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_text_screen.md")
C_GRID = (1, 3, 10, 30)
TOKEN = re.compile(r"(?u)\b\w+\b")
#: Candidates: changes on top of ``bench_text.SETTINGS`` (the current settings).
CANDIDATES = {
    "current": {},
    # Cosine decay from 2e-3 over a fixed 15 epochs; the internal 10 % split
    # still picks the best epoch, but never stops training early.
    "cosine15": dict(learning_rate="cosine", max_iter=15, n_iter_no_change=15),
    # Added after cosine15 under-trained SMS (93.7 %): a higher peak, longer.
    "cosine20_4e-3": dict(learning_rate="cosine", learning_rate_init=4e-3, max_iter=20,
                          n_iter_no_change=20),
    # Added after the current settings' SST-2 proxy result (83.2 vs TF-IDF 84.4):
    # evidence spread over more of a long sentence's tokens.
    "mean_pooling": dict(pooling="mean"),
    "heads16": dict(n_heads=16),
    "alpha0.02": dict(alpha=0.02),
    # Added after the epoch curve: SST-2's long items peak at epoch 3 while the
    # estimator's split of short items picks epoch ~6, so stronger decay.
    "alpha0.1": dict(alpha=0.1),
    "alpha0.2": dict(alpha=0.2),
    # fastText-style character n-grams of every word (``char_ngram_range``),
    # appended after the words and bigrams; rows grow ~7x (SST-2 proxy
    # validation items: 43 -> 319 positions on average, at most 578), so
    # ``max_len`` is raised to keep whole documents.
    "char3_5": dict(char_ngram_range=(3, 5), max_len=1024),
    "char2_4": dict(char_ngram_range=(2, 4), max_len=1024),
    "char3_4": dict(char_ngram_range=(3, 4), max_len=1024),
    # Added after the three above fell short on SST-2: a mean of word, bigram
    # and subword embeddings is fastText's own document vector.
    "char3_5_mean": dict(char_ngram_range=(3, 5), max_len=1024, pooling="mean"),
}


DECISION = """\
Decision (for `bench_text.py`, issue #4). Rule: the same settings on every set, and of
the candidates the one whose largest shortfall against the TF-IDF row is smallest
(SST-2: mean of the two proxy draws). Seed ensembles of the current settings gained
0.0-0.3 points over the single model's mean but left SST-2 about a point short
(-1.1, with three seeds on the 2nd draw; SMS -0.1, AG News +0.3). The cosine
schedules under-trained SMS and AG News and were no better on SST-2; weight decay
0.1/0.2 and 16 heads were no better than 0.05 and 4 heads on SST-2, so they were not
run on the other sets. Mean pooling alone was as good on the first SST-2 draw and
better on the second, but worse on SMS and AG News. The epoch curve shows why
SST-2 needs something: its long items peak at epoch 3 while the estimator's own
split of short phrases picks epoch ~6. The 3 + 3 mix of attention- and mean-pooling
models (defined after the first SST-2 draw, then checked on the second draw and the
other sets) had the smallest largest shortfall: SST-2 -0.3 (-0.1 / -0.6), SMS -0.3,
AG News 0.0, and was adopted; no candidate reached the baseline on every set here.
The other mixes were computed afterwards from the same fits and are shown only for
completeness."""

CHAR_NGRAMS = """\
Character n-grams (`char_ngram_range`, fastText-style subwords of every word as
further positions; screened after the decision above, on the same splits). They do
not close the gap: on the SST-2 proxy every variant was worse than the current
settings (seeds 0-2 means: current 83.25; char3_5 82.37, char3_4 82.00, char2_4 80.43
over two seeds, char3_5_mean 82.62 against mean pooling's 83.13; 2nd draw char3_5
82.18 against 82.47), and char3_5 was also worse on SMS (97.09 against 97.80) and on
AG News (87.71 against 88.54, one seed stopping early at epoch 7; the other two
matched the current settings). Rows grow ~7x (SST-2 validation items 43 -> 319
positions), fits took 4-5x longer (SST-2 ~140 s against ~30 s, AG News ~100 s
against ~25 s) and ran more epochs before early stopping. Post hoc, from the same
fits, a soft vote of current seeds 0-2 with char3_5 seeds 0-2 gains from the
diversity (SST-2 84.1 / 83.2, SMS 97.9, AG News 89.5), but its largest shortfall
by the rule above (SST-2 -0.48 over the two draws) is worse than that of the
adopted current + mean pooling mix (-0.34, SMS); adding char3_5 to that mix (9
models) gives -0.40 (SST-2), also worse. `char_ngram_range` stays off (None) by
default."""


RUNS = [
    "S=benchmarks/screen_text.py",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sms ag sst2 --candidates current cosine15 --seeds 5"
    "  # stopped during AG cosine15 seed 4, before SST-2",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sst2 --candidates current --seeds 5",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sms sst2 --candidates cosine20_4e-3 --seeds 3",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sst2 --curve 12",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sst2 --candidates alpha0.2 alpha0.1 "
    "mean_pooling heads16 --seeds 3  # stopped after heads16 seed 0 (slower, no better)",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sms ag --candidates mean_pooling --seeds 3",
    "PYTHONPATH=. python $S --n-jobs 1 --sets sst2b --candidates current mean_pooling --seeds 3",
    "PYTHONPATH=. python $S --report-only  # alpha0.02 was never run",
    "C=/tmp/screen_text_cache_helper.json  # a copy of the cache of the runs above",
    "PYTHONPATH=. python $S --n-jobs 1 --cache $C --sets sst2 --candidates char3_5 --seeds 3",
    "PYTHONPATH=. python $S --n-jobs 1 --cache $C --sets sst2 --candidates char3_4 char2_4 "
    "--seeds 3  # stopped after char2_4 seed 1 (246 s a fit, worse)",
    "PYTHONPATH=. python $S --n-jobs 1 --cache $C --sets sst2 --candidates char3_5_mean "
    "--seeds 3",
    "PYTHONPATH=. python $S --n-jobs 1 --cache $C --sets sms ag --candidates char3_5 --seeds 3"
    "  # an extra: no candidate had beaten current on SST-2",
    "PYTHONPATH=. python $S --n-jobs 1 --cache $C --sets sst2b --candidates char3_5 --seeds 3"
    "  # to check the post-hoc current + char3_5 mix on the 2nd draw",
    "PYTHONPATH=. python $S --cache $C --report-only",
]


def _tokens(text):
    return tuple(TOKEN.findall(text.lower()))


def sst2_split(min_tokens=20, n_valid=2000, seed=0):
    X, y = _read("sst2/train.tsv")
    tokens = [_tokens(x) for x in X]
    long_index = np.array([i for i, t in enumerate(tokens) if len(t) >= min_tokens])
    valid, _ = train_test_split(long_index, train_size=n_valid, random_state=seed,
                                stratify=y[long_index])
    valid = np.sort(valid)
    spans = set()
    for i in valid:
        t = tokens[i]
        for a in range(len(t)):
            for b in range(a + 1, len(t) + 1):
                spans.add(t[a:b])
    in_valid = np.zeros(len(X), bool)
    in_valid[valid] = True
    fit = np.array([i for i in range(len(X)) if not in_valid[i] and tokens[i] not in spans])
    return ([X[i] for i in fit], y[fit], [X[i] for i in valid], y[valid],
            f"{len(fit):,} fit ({len(X) - len(fit) - len(valid):,} sub-phrases of validation "
            f"items dropped) / {len(valid):,} validation items of >= {min_tokens} tokens")


def sms_split():
    X, y = _read("sms_spam/data.tsv")
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.2,
                                                  random_state=0, stratify=y_train)
    return X_fit, y_fit, X_val, y_val, f"{len(X_fit):,} fit / {len(X_val):,} validation"


def ag_split():
    X, y = _read("ag_news/train_sample.tsv")
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=0.2, random_state=0,
                                                  stratify=y)
    return X_fit, y_fit, X_val, y_val, f"{len(X_fit):,} fit / {len(X_val):,} validation"


SPLITS = {"sst2": sst2_split, "sms": sms_split, "ag": ag_split,
          # A second draw of the SST-2 proxy, to confirm what the first suggested.
          "sst2b": lambda: sst2_split(seed=1)}
NAMES = {"sst2": "SST-2 (long-item proxy)", "sms": "SMS spam", "ag": "AG News",
         "sst2b": "SST-2 (long-item proxy, 2nd draw)"}
#: Soft-voting ensembles mixing candidates: name -> [(candidate, seeds)].
MIXES = {
    # Added after the SST-2 proxy: attention and mean pooling err differently.
    "mixed: current seeds 0-2 + mean_pooling seeds 0-2": [("current", 3),
                                                          ("mean_pooling", 3)],
    # Other mixes looked at afterwards, shown for completeness (not chosen).
    "mixed: current seeds 0-2 + mean_pooling seeds 0-1": [("current", 3),
                                                          ("mean_pooling", 2)],
    "mixed: current seeds 0-1 + mean_pooling seeds 0-2": [("current", 2),
                                                          ("mean_pooling", 3)],
    "mixed: current seeds 0-4 + mean_pooling seeds 0-2": [("current", 5),
                                                          ("mean_pooling", 3)],
    # Computed after the character n-gram screen (post hoc, from the same fits):
    # the char3_5 models are worse alone but may err differently.
    "mixed: current seeds 0-2 + char3_5 seeds 0-2": [("current", 3), ("char3_5", 3)],
    "mixed: current seeds 0-2 + mean_pooling seeds 0-2 + char3_5 seeds 0-2": [
        ("current", 3), ("mean_pooling", 3), ("char3_5", 3)],
}


def _load(path):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def _save(path, cache):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(cache, f)
    os.replace(path + ".tmp", path)


def run(args):
    from skattention import TextAttentionClassifier

    cache = _load(args.cache)
    for key in args.sets:
        X_fit, y_fit, X_val, y_val, description = SPLITS[key]()
        entry = cache.setdefault(key, {"candidates": {}})
        entry["description"] = description
        entry["y_val"] = y_val.tolist()
        if "tfidf" not in entry:
            scores = [float(np.mean(_tfidf(C).fit(X_fit, y_fit).predict(X_val) == y_val))
                      for C in C_GRID]
            entry["tfidf"] = {"accuracy": max(scores), "C": C_GRID[int(np.argmax(scores))]}
            _save(args.cache, cache)
        print(f"{key}: {description}; TF-IDF {entry['tfidf']}", file=sys.stderr, flush=True)
        for name in args.candidates:
            runs = entry["candidates"].setdefault(name, {})
            for seed in range(args.seeds):
                if str(seed) in runs:
                    continue
                params = dict(SETTINGS, **CANDIDATES[name], random_state=seed,
                              n_jobs=args.n_jobs)
                model = TextAttentionClassifier(**params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    model.fit(X_fit, y_fit)
                    seconds = time.perf_counter() - start
                    proba = model.predict_proba(X_val)
                runs[str(seed)] = {"classes": model.classes_.tolist(),
                                   "proba": np.round(proba, 5).tolist(),
                                   "seconds": seconds, "epochs": model.n_iter_}
                accuracy = np.mean(model.classes_[proba.argmax(1)] == y_val)
                print(f"  {name} seed {seed}: {accuracy:.4f} ({seconds:.1f} s, "
                      f"{model.n_iter_} epochs)", file=sys.stderr, flush=True)
                _save(args.cache, cache)


def curve(args):
    """Validation accuracy after each epoch: the current settings without early stopping.

    ``warm_start`` fits of one epoch each on the whole fitting set (the rate
    is constant, the optimizer state is kept), to see which epoch the
    validation split prefers next to the epoch that the estimator's own 10 %
    split of (short) training items picks.
    """
    from skattention import TextAttentionClassifier

    cache = _load(args.cache)
    for key in args.sets:
        X_fit, y_fit, X_val, y_val, _ = SPLITS[key]()
        params = dict(SETTINGS, early_stopping=False, max_iter=1, warm_start=True,
                      random_state=0, n_jobs=args.n_jobs)
        model = TextAttentionClassifier(**params)
        scores = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in range(args.curve):
                model.fit(X_fit, y_fit)
                scores.append(float(np.mean(model.predict(X_val) == y_val)))
                print(f"  {key} epoch {epoch + 1}: {scores[-1]:.4f}", file=sys.stderr,
                      flush=True)
        cache.setdefault(key, {}).setdefault("curve", scores)
        cache[key]["curve"] = scores
        _save(args.cache, cache)


def report(args):
    cache = _load(args.cache)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    lines = [
        "# TextAttentionClassifier settings screen: validation splits of the training data",
        "",
        f"Written {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({os.cpu_count()} CPUs, shared), skattention git {commit}, kernels on "
        f"{args.n_jobs} thread(s). The test splits of `bench_text.py` are not read "
        "(see this script's docstring for the splits).",
        "",
        "Run in parts, one after the other, sharing the cache (this report lists every "
        "cached fit):",
        "",
        "```",
        *RUNS,
        "```",
        "",
        "Every candidate is `bench_text.SETTINGS` ("
        + ", ".join(f"{k}={v!r}" for k, v in SETTINGS.items() if k != "random_state")
        + ") on top of the `TextAttentionClassifier` defaults, with the changes below; "
        "fitted once per seed (`random_state`). Ensemble: soft vote (mean `predict_proba`) "
        "of seeds 0-2 / of all seeds. Accuracy in %; s: mean fit seconds per model.",
        "",
    ]
    for name, changes in CANDIDATES.items():
        described = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        lines.append(f"* `{name}`: " + (described or "the current settings"))
    lines += ["", "| data set | split | candidate | seeds | seed 0 | mean (min-max) over seeds "
              "| ensemble of 3 | ensemble of all | epochs | s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    curves = []
    for key, entry in cache.items():
        if "curve" in entry:
            curves.append(f"* {NAMES[key]}: " + ", ".join(
                f"{100 * a:.1f}" for a in entry["curve"]))
        y_val = np.array(entry["y_val"])
        lines.append(f"| {NAMES[key]} | {entry['description']} | TF-IDF + LR, best C "
                     f"(C={entry['tfidf']['C']}) | | {100 * entry['tfidf']['accuracy']:.1f} "
                     "| | | | | |")
        for name, runs in entry["candidates"].items():
            seeds = sorted(runs, key=int)
            classes = np.array(runs[seeds[0]]["classes"])
            probas = [np.array(runs[s]["proba"]) for s in seeds]
            acc = [100 * np.mean(classes[p.argmax(1)] == y_val) for p in probas]

            def vote(k):
                if len(probas) < k:
                    return ""
                p = np.mean(probas[:k], axis=0)
                return f"{100 * np.mean(classes[p.argmax(1)] == y_val):.1f}"

            epochs = "/".join(str(runs[s]["epochs"]) for s in seeds)
            seconds = np.mean([runs[s]["seconds"] for s in seeds])
            lines.append(f"| {NAMES[key]} | | {name} | {len(seeds)} | {acc[0]:.1f} | "
                         f"{np.mean(acc):.2f} ({min(acc):.1f}-{max(acc):.1f}) | {vote(3)} | "
                         f"{vote(len(probas)) if len(probas) > 3 else ''} | {epochs} | "
                         f"{seconds:.0f} |")
        for mix, parts in MIXES.items():
            if all(len(entry["candidates"].get(name, {})) >= k for name, k in parts):
                probas = [np.array(entry["candidates"][name][str(seed)]["proba"])
                          for name, k in parts for seed in range(k)]
                classes = np.array(entry["candidates"][parts[0][0]]["0"]["classes"])
                p = np.mean(probas, axis=0)
                lines.append(f"| {NAMES[key]} | | {mix} | {len(probas)} | | | | "
                             f"{100 * np.mean(classes[p.argmax(1)] == y_val):.1f} | | |")
    lines += ["", DECISION, "", CHAR_NGRAMS]
    if curves:
        lines += ["", "Validation accuracy after epochs 1, 2, ... of one fit of the current "
                  "settings (seed 0) on the whole fitting set, without early stopping:", ""]
        lines += curves
    text = "\n".join(lines) + "\n"
    print(text)
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--sets", nargs="*", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES),
                        choices=list(CANDIDATES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", default="/tmp/screen_text_cache.json")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--curve", type=int, default=0,
                        help="instead of the candidates: accuracy per epoch over this many")
    args = parser.parse_args(argv)
    if args.curve:
        curve(args)
    elif not args.report_only:
        run(args)
    report(args)


if __name__ == "__main__":
    main()
