import warnings, sys
warnings.simplefilter("ignore")
import numpy as np
import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task, train_classifier
train = sentiment_task(1000, seed=0, length=16)
models = {
    "vanilla": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4),
    "diverse": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3),
}
inputs = sentiment_task(80, seed=99, length=16).inputs()
for name, net in models.items():
    for eps in (0.05, 0.1, 0.25, 0.5):
        r = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=("adversarial","uniform"), epsilon=eps)
        print(name, eps, {n: round(c.statistic, 3) for n, c in r.checks.items()}, flush=True)
