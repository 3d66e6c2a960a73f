import warnings; warnings.simplefilter("ignore")
import numpy as np, torch
import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task, train_classifier
from tests.core.test_definitions import reference_values
train = sentiment_task(1000, seed=0, length=16)
net = train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3)
inputs = {k: v[:24] for k, v in sentiment_task(80, seed=99, length=16).inputs().items()}
for res in (None, 0.0):
    r = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=["gradient"], scale="probability", resolution=res)
    e = np.array(reference_values(net, inputs)["gradient"])
    d = np.abs(r.checks["gradient"].per_instance - e)
    print(res, np.nanmax(d), np.isnan(r.checks["gradient"].per_instance).sum(), np.isnan(e).sum(), r.model["resolution"])
