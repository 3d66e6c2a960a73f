"""Models are trained once per session; every test audits them."""

import pytest
from models import minilm_classifier, train_bilstm


@pytest.fixture(scope="session")
def bilstm():
    return train_bilstm()


@pytest.fixture(scope="session")
def bilstm_twin():
    return train_bilstm(readout="mean", diversity=0.0)


@pytest.fixture(scope="session")
def minilm():
    return minilm_classifier()
