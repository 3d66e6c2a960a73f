import sys, torch, warnings
warnings.simplefilter("ignore")
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task
from torch import nn
class Scaled(nn.Module):
    def __init__(self, net, t):
        super().__init__(); self.net=net; self.t=t
    def forward(self, input_ids, attention_mask=None):
        return self.net(input_ids, attention_mask)*self.t
inputs = sentiment_task(48, seed=7).inputs()
scale = sys.argv[1] if len(sys.argv)>1 else "margin"
for kind in ZooModel.KINDS:
    for t in (0.1, 1, 10, 100):
        m = af.wrap(Scaled(ZooModel(kind), t), attention="net.attn", embeddings="net.embed")
        r = af.audit(m, inputs, scale=scale, permutations=30, adversarial_steps=60)
        print(kind, t, r.verdicts, {n: round(c.statistic,4) for n,c in r.checks.items()})
