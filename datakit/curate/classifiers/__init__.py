"""fastText classifiers as pipeline steps: language identification (a model ships with datakit) and quality."""

from datakit.curate.classifiers import language, quality
from datakit.curate.classifiers.training import FastTextSettings, TrainedClassifier, train_classifier

__all__ = ["FastTextSettings", "TrainedClassifier", "language", "quality", "train_classifier"]
