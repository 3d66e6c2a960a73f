import warnings, sys
warnings.simplefilter("ignore")
import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task, train_classifier
train = sentiment_task(1000, seed=0, length=16)
models = {
    "vanilla": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4),
    "diverse": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3),
    "twin": train_classifier(BiLSTMClassifier(readout="mean", seed=0), train, epochs=4),
}
inputs = sentiment_task(80, seed=99, length=16).inputs()
for scale in sys.argv[1:]:
    for name, net in models.items():
        r = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, scale=scale)
        print(scale, name, r.verdicts, {n: (round(c.statistic, 3), round(c.details.get("median", float("nan")), 4)) for n, c in r.checks.items()}, r.model["padding_sensitive"])
