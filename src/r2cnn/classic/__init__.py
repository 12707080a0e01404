"""The classic rows of the paper's Table 1 (hand-crafted features + classifier), on the same rasterised images
as the CNN rows. scikit-learn, scikit-image and OpenCV do the standard parts (k-means, PCA, GMMs, SVMs, HOG,
SIFT); this package wires them into the papers' pipelines and keeps the fitted state as arrays.

- :mod:`r2cnn.classic.images`: store -> chunks of rasterised images (NLR at constant intensity);
- :mod:`r2cnn.classic.features`: dense HOG / SIFT descriptors, global HOG, ImageNet AlexNet fc7;
- :mod:`r2cnn.classic.encoders`: bag of words (soft, with spatial layouts), Fisher vectors, normalisations,
  kernel weights by alignment;
- :mod:`r2cnn.classic.svm`: linear SVM (streamed SGD) and RBF SVM, as arrays;
- :mod:`r2cnn.classic.modelfile`: the ``.npz`` model file (no pickles);
- :mod:`r2cnn.classic.runner`: :class:`ClassicRunner` (train / predict / evaluate);
- :mod:`r2cnn.classic.presets`: the ``tub-*`` and ``cpu-*`` presets.

Importing this package is cheap: the modules above are imported where they are used.
"""
