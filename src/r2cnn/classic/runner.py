"""Train and apply a classic Table 1 row: the ``runner = "classic"`` presets (:mod:`r2cnn.classic.presets`).

``ClassicRunner().train(preset, data, out, ...)`` -> ``out/model.npz``; ``ClassicRunner().predict(model, data,
split)`` -> ``dict(index, label, top5, sketches_per_second)``. The experiment runner dispatches to it on
``preset["runner"]``; ``r2cnn train`` / ``r2cnn evaluate`` do too.

Training, in bounded memory whatever the number of sketches:

1. rasterise (:mod:`r2cnn.classic.images`) a seeded sample of ``fit_images`` training sketches, take at most
   ``max_descriptors`` local descriptors from them and fit the encoders (vocabularies, PCA + GMM);
2. encode every training sketch, ``chunk`` at a time, into a float32 feature matrix memory-mapped on disk
   (``out/features.tmp.npy``, deleted at the end);
3. with ``combine = "mkl"``, learn one weight per feature block by kernel-target alignment on ``align_sketches``
   rows (:func:`r2cnn.classic.encoders.alignment_weights`) and scale each block by the square root of its
   weight, so that a linear SVM on the result is an SVM on the weighted sum of the blocks' kernels;
4. fit the classifier (:mod:`r2cnn.classic.svm`): an RBF SVM (rows held in memory: the feature is small), a
   linear SVM streamed over the memory map, or the ensemble: each class split by k-means into ``members``
   sub-classes, one linear SVM per sub-class, a class scoring its best member.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from r2cnn.classic.encoders import alignment_weights, build_block
from r2cnn.classic.images import DEFAULT_CHUNK, iterate_images
from r2cnn.classic.modelfile import load_model, save_model
from r2cnn.classic.svm import KernelSVM, LinearSVM
from r2cnn.data.formats.common import write_file
from r2cnn.data.store import SketchStore
from r2cnn.errors import R2CNNError

MODEL_FILE = "model.npz"
CLASSIFIERS = ("rbf-svm", "linear-svm", "ensemble")


def _progress(iterable, desc: str, total: int):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit="chunk", leave=False, disable=None)


class _Pipeline:
    """Blocks + block weights + classifier of one preset; built fresh for training or from a model file."""

    def __init__(self, preset: dict, num_classes: int):
        self.preset, self.num_classes = preset, num_classes
        self.canvas, self.eps = int(preset["canvas"]), float(preset.get("eps", 1.0))
        self.chunk = int(preset.get("chunk", DEFAULT_CHUNK))
        self.blocks = [build_block(c) for c in preset["blocks"]]
        self.scale = np.ones(len(self.blocks), np.float32)  # sqrt of the kernel weights
        self.spans: list[tuple[int, int]] = []
        clf = dict(preset["classifier"])
        self.kind = clf.pop("kind", None)
        if self.kind not in CLASSIFIERS:
            raise R2CNNError(f"unknown classifier {self.kind!r}; known: {', '.join(CLASSIFIERS)}")
        self.members = int(clf.pop("members", 1)) if self.kind == "ensemble" else 1
        try:
            self.classifier = KernelSVM(**clf) if self.kind == "rbf-svm" else LinearSVM(**clf)
        except TypeError as e:
            raise R2CNNError(f"classifier {self.kind!r}: {e}") from e

    def images(self, store: SketchStore, indices: np.ndarray):
        return iterate_images(store, indices, size=self.canvas, eps=self.eps,
                              eval_transform=self.preset.get("eval_transform"), chunk=self.chunk)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` -> ``(B, D)`` weighted, concatenated block features."""
        parts = [b.encode(images) * s for b, s in zip(self.blocks, self.scale)]
        if not self.spans:
            ends = np.cumsum([p.shape[1] for p in parts])
            self.spans = [(int(e - p.shape[1]), int(e)) for e, p in zip(ends, parts)]
        return np.concatenate(parts, axis=1)

    def scores(self, features: np.ndarray) -> np.ndarray:
        s = self.classifier.scores(features)
        if self.members > 1:  # ensemble: a class scores its best member
            s = s.reshape(len(s), self.num_classes, self.members).max(axis=2)
        return s

    # -- fitting ------------------------------------------------------------------------------------------
    def fit_encoders(self, store: SketchStore, indices: np.ndarray, rng: np.random.Generator, seed: int) -> None:
        from r2cnn.classic.features import describe

        needing = [b for b in self.blocks if b.descriptor is not None]
        if not needing:
            return
        fit = np.sort(rng.choice(indices, min(len(indices), int(self.preset.get("fit_images", 2000))),
                                 replace=False))
        per_image = max(1, int(self.preset.get("max_descriptors", 200_000)) // len(fit))
        keys = {(b.descriptor, json.dumps(b.descriptor_options, sort_keys=True)) for b in needing}
        samples: dict = {k: [] for k in keys}
        for _, images, _ in _progress(self.images(store, fit), "descriptors", -(-len(fit) // self.chunk)):
            for image in images:
                for key in keys:
                    desc, _ = describe(image, key[0], json.loads(key[1]))
                    if len(desc) > per_image:
                        desc = desc[rng.choice(len(desc), per_image, replace=False)]
                    samples[key].append(desc)
        for b in needing:
            key = (b.descriptor, json.dumps(b.descriptor_options, sort_keys=True))
            b.fit(np.concatenate(samples[key]) if samples[key] else np.zeros((0, 1), np.float32), seed)

    def fit_classifier(self, features: np.ndarray, labels: np.ndarray, seed: int,
                       rng: np.random.Generator) -> None:
        """``features``: ``(n, D)`` unweighted block features (an array or a memory map)."""
        if self.preset.get("combine", "concat") == "mkl":
            n_align = min(len(labels), int(self.preset.get("align_sketches", 2000)))
            rows = np.sort(rng.choice(len(labels), n_align, replace=False))
            sample = np.asarray(features[rows])
            weights = alignment_weights([sample[:, a:b] for a, b in self.spans], labels[rows])
            self.scale = np.sqrt(weights).astype(np.float32)
        column_scale = np.concatenate([np.full(b - a, s, np.float32) for (a, b), s in zip(self.spans, self.scale)])

        def rows_of(index: np.ndarray) -> np.ndarray:
            return np.asarray(features[index]) * column_scale

        if self.kind == "rbf-svm":
            self.classifier.fit(rows_of(np.arange(len(labels))), labels, self.num_classes, seed)
            return
        targets = labels
        if self.members > 1:
            targets = self._sub_classes(rows_of, labels, seed)
        self.classifier.fit(rows_of, targets, self.num_classes * self.members, seed)

    def _sub_classes(self, rows_of, labels: np.ndarray, seed: int) -> np.ndarray:
        """Ensemble members: k-means (scikit-learn) of each class's training features into ``members`` clusters;
        sub-class ``c * members + cluster``."""
        from sklearn.cluster import KMeans

        targets = labels * self.members
        for c in np.unique(labels):
            where = np.flatnonzero(labels == c)
            k = min(self.members, len(where))
            if k > 1:
                clusters = KMeans(k, n_init=3, random_state=seed).fit_predict(rows_of(where))
                targets[where] += clusters
        return targets

    # -- arrays -------------------------------------------------------------------------------------------
    def parts(self) -> dict[str, dict[str, np.ndarray]]:
        parts = {f"block{i}": b.state() for i, b in enumerate(self.blocks)}
        parts["classifier"] = self.classifier.state()
        parts["combine"] = {"scale": self.scale, "spans": np.array(self.spans, np.int64).reshape(-1, 2)}
        return parts

    def load(self, parts: dict[str, dict[str, np.ndarray]]) -> None:
        for i, b in enumerate(self.blocks):
            b.load(parts.get(f"block{i}", {}))
        self.classifier.load(parts["classifier"])
        self.scale = parts["combine"]["scale"]
        self.spans = [tuple(int(v) for v in s) for s in parts["combine"]["spans"]]


def _resolved(preset: dict, pipeline: _Pipeline) -> dict:
    """The preset with what was resolved at training time (the AlexNet weights file) written in."""
    preset = json.loads(json.dumps(preset))
    for config, block in zip(preset["blocks"], pipeline.blocks):
        if config.get("kind") == "alexnet-fc7":
            config["weights"] = block.weights
    return preset


class ClassicRunner:
    """The experiment runner's interface for ``runner = "classic"`` presets."""

    def train(self, preset: dict, data: Path, out: Path, *, seed: int = 0, fold: int | None = None,
              epochs: int | None = None, steps: int | None = None, max_minutes: float | None = None,
              init_from: Path | None = None, resume: bool = False, train_subset: int | None = None) -> Path:
        """Fit the row on the training split of store ``data`` (fold ``fold`` is the test fold of a k-fold
        store); -> ``out/model.npz``. ``epochs`` overrides the linear SVMs' passes over the data (the RBF SVM
        makes none, and ignores it). ``steps`` and ``max_minutes`` have no counterpart (fitting is not step-based)
        and are ignored; ``init_from`` is refused. ``resume``: an existing model for the same preset, seed, fold
        and subset is reused.
        ``train_subset``: a seeded random subset of that many training sketches."""
        out = Path(out)
        path = out / MODEL_FILE
        if init_from is not None:
            raise R2CNNError("classic rows do not start from a checkpoint (--init-from)")
        if preset.get("runner") != "classic":
            raise R2CNNError(f"preset {preset.get('description', '')!r} is not a classic row")
        request = dict(seed=seed, fold=fold, train_subset=train_subset, epochs=epochs,
                       preset_sha1=hashlib.sha1(json.dumps(preset, sort_keys=True).encode()).hexdigest())
        if resume and path.is_file() and load_model(path)[0].get("request") == request:
            return path
        start = time.perf_counter()
        store = SketchStore(data)
        classes = list(store.classes)
        rng = np.random.default_rng(seed)
        indices = store.indices("train", fold=fold)
        if train_subset is not None and train_subset < len(indices):
            indices = np.sort(rng.choice(indices, int(train_subset), replace=False))
        if len(indices) == 0:
            raise R2CNNError(f"{data}: the training split is empty")
        labels = np.asarray(store.labels[indices], np.int64)
        preset = dict(preset)
        if epochs is not None and "epochs" in preset["classifier"]:  # the RBF SVM makes no passes
            preset["classifier"] = dict(preset["classifier"], epochs=int(epochs))
        pipeline = _Pipeline(preset, len(classes))
        pipeline.fit_encoders(store, indices, rng, seed)
        fitted = time.perf_counter()

        out.mkdir(parents=True, exist_ok=True)
        cache_path = out / "features.tmp.npy"
        cache = None
        try:
            row = 0
            for _, images, _ in _progress(pipeline.images(store, indices), "features",
                                          -(-len(indices) // pipeline.chunk)):
                feats = pipeline.encode(images)
                if cache is None:
                    cache = np.lib.format.open_memmap(cache_path, mode="w+", dtype=np.float32,
                                                      shape=(len(indices), feats.shape[1]))
                cache[row:row + len(feats)] = feats
                row += len(feats)
            encoded = time.perf_counter()
            pipeline.fit_classifier(cache, labels, seed, rng)
        finally:
            del cache
            cache_path.unlink(missing_ok=True)
        done = time.perf_counter()
        config = dict(preset=_resolved(preset, pipeline), classes=classes,
                      request=request, train_count=int(len(indices)), num_features=int(pipeline.spans[-1][1]),
                      kernel_weights=(pipeline.scale ** 2).tolist(),
                      seconds=dict(encoders=fitted - start, features=encoded - fitted, classifier=done - encoded))
        save_model(path, config, pipeline.parts())
        write_file(out / "train.json", json.dumps({k: config[k] for k in ("request", "train_count", "num_features",
                                                                          "kernel_weights", "seconds")}, indent=1))
        return path

    @staticmethod
    def load(model_path: Path) -> tuple[_Pipeline, dict]:
        """The fitted pipeline of a model file and its configuration (classes, preset, training request)."""
        config, parts = load_model(model_path)
        pipeline = _Pipeline(config["preset"], len(config["classes"]))
        pipeline.load(parts)
        return pipeline, config

    def predict(self, model_path: Path, data: Path, split: str = "test", fold: int | None = None) -> dict:
        """Top-5 classes of every sketch of ``split`` -> ``dict(index (N,) store indices, label (N,), top5 (N, k)
        class ids best first (k = min(5, classes)), scores (N, K) float32, sketches_per_second)``. ``fold``
        defaults to the fold the model was trained with."""
        pipeline, config = self.load(model_path)
        store = SketchStore(data)
        if list(store.classes) != config["classes"]:
            raise R2CNNError(f"{data}: the store's classes differ from the model's ({len(store.classes)} vs "
                             f"{len(config['classes'])} classes, or another order)")
        if fold is None:
            fold = config["request"].get("fold")
        indices = store.indices(split, fold=fold)
        k = min(5, len(config["classes"]))
        index, label, top5, scores = [], [], [], []
        start = time.perf_counter()
        for idx, images, labels in _progress(pipeline.images(store, indices), split,
                                             -(-len(indices) // pipeline.chunk)):
            s = pipeline.scores(pipeline.encode(images))
            index.append(idx)
            label.append(labels)
            top5.append(np.argsort(-s, axis=1, kind="stable")[:, :k])
            scores.append(s.astype(np.float32))
        seconds = time.perf_counter() - start
        if not index:
            raise R2CNNError(f"{data}: split {split!r} is empty")
        return dict(index=np.concatenate(index), label=np.concatenate(label), top5=np.concatenate(top5),
                    scores=np.concatenate(scores), sketches_per_second=len(indices) / max(seconds, 1e-9))

    def evaluate(self, model_path: Path, data: Path, split: str = "test", fold: int | None = None) -> dict:
        """Top-1, top-5, per-class accuracy and confusion matrix (plain JSON types), as ``r2cnn evaluate``."""
        result = self.predict(model_path, data, split, fold)
        _, config = self.load(model_path)
        classes = config["classes"]
        truth, top5 = result["label"], result["top5"]
        confusion = np.zeros((len(classes), len(classes)), np.int64)
        np.add.at(confusion, (truth, top5[:, 0]), 1)
        totals = confusion.sum(1)
        per_class = [float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(len(classes))]
        return {"checkpoint": str(model_path), "data": str(data), "split": split,
                "fold": fold if fold is not None else config["request"].get("fold"),
                "preset": config["preset"].get("description"), "count": int(len(truth)),
                "top1": float((top5[:, 0] == truth).mean()), "top5": float((top5 == truth[:, None]).any(1).mean()),
                "per_class": dict(zip(classes, per_class)), "classes": classes, "confusion": confusion.tolist(),
                "sketches_per_s": float(result["sketches_per_second"])}
