"""Security settings reach every Kafka client; everything listens on loopback by default; no code
loads pickles or other code-carrying formats (bundles are ONNX + JSON)."""

from __future__ import annotations

import ast
import inspect
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from nextbehavior.stream import cli_infra
from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.publisher import producer_options
from nextbehavior.stream.reader import consumer_options
from nextbehavior.stream.settings import DEFAULT_BROKER, Settings
from nextbehavior.stream.topics import _options as admin_options
from nextbehavior.stream.worker import broker_credentials, faust_config

REPO = Path(__file__).parents[2]
PASSWORD = "s3cret-pw"
OPENSSL_SELF_SIGNED = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
OPENSSL_SELF_SIGNED += ["-subj", "/CN=localhost"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key (openssl), used as CA, client cert and key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    out = tmp_path_factory.mktemp("tls")
    cert, key = out / "cert.pem", out / "key.pem"
    subprocess.run(
        [*OPENSSL_SELF_SIGNED, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return {"cafile": cert, "certfile": cert, "keyfile": key}


def sasl(protocol: str, mechanism: str, **extra: Any) -> Settings:
    return Settings(
        broker="kafka://broker.example:9093",
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="svc-nextbehavior",
        sasl_password=PASSWORD,
        **extra,
    )


def client_kwargs(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The keyword arguments each of our aiokafka clients is built with."""
    return [
        ("shared", aiokafka_options(settings)),
        ("replay producer", producer_options(settings)),
        ("tail/monitor consumer", consumer_options(settings)),
        ("topics admin", admin_options(settings)),
        ("worker (Faust)", credentials_to_aiokafka_auth(broker_credentials(settings))),
    ]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_reaches_every_client(mechanism: str) -> None:
    settings = sasl("SASL_PLAINTEXT", mechanism)
    for name, kwargs in client_kwargs(settings):
        assert kwargs["security_protocol"] == "SASL_PLAINTEXT", name
        assert kwargs["sasl_mechanism"] == mechanism, name
        assert kwargs["sasl_plain_username"] == "svc-nextbehavior", name
        assert kwargs["sasl_plain_password"] == PASSWORD, name
    # The real client objects take them (nothing connects until start()).
    producer = AIOKafkaProducer(**producer_options(settings))
    assert producer.client._sasl_mechanism == mechanism
    assert producer.client._sasl_plain_password == PASSWORD
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    assert consumer._client._security_protocol == "SASL_PLAINTEXT"
    admin = AIOKafkaAdminClient(**admin_options(settings))
    assert admin._client._sasl_plain_username == "svc-nextbehavior"


def test_sasl_ssl_and_ssl_carry_a_tls_context(tls_files: dict[str, Path]) -> None:
    for settings, protocol in (
        (sasl("SASL_SSL", "SCRAM-SHA-512", **{f"ssl_{k}": v for k, v in tls_files.items()}), None),
        (
            Settings(
                broker="kafka://broker.example:9093",
                security_protocol="SSL",
                **{f"ssl_{k}": v for k, v in tls_files.items()},
            ),
            "SSL",
        ),
    ):
        for name, kwargs in client_kwargs(settings):
            assert isinstance(kwargs["ssl_context"], ssl.SSLContext), name
            assert kwargs["security_protocol"] == (protocol or "SASL_SSL"), name
            context: ssl.SSLContext = kwargs["ssl_context"]
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname, name
            if protocol is None:
                assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512", name


def test_faust_app_gets_the_credentials() -> None:
    settings = sasl("SASL_PLAINTEXT", "SCRAM-SHA-256")
    config = faust_config(settings, partitions=2)
    app = faust.App("security-test", **config)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_password"] == PASSWORD
    assert broker_credentials(Settings()) is None  # PLAINTEXT: none


def test_password_is_kept_out_of_reprs() -> None:
    settings = sasl("SASL_PLAINTEXT", "PLAIN", pseudonymize_key="hmac-key-value")
    shown = repr(settings) + str(settings.model_dump())
    assert PASSWORD not in shown and "hmac-key-value" not in shown


def test_everything_binds_to_loopback_by_default() -> None:
    settings = Settings()
    assert settings.web_host == "127.0.0.1"
    assert settings.bootstrap == "127.0.0.1:9092" and DEFAULT_BROKER.startswith("kafka://127.")
    config = faust_config(settings, partitions=1)
    assert config["web_bind"] == "127.0.0.1" and config["web_host"] == "127.0.0.1"
    assert EmbeddedBroker().host == "127.0.0.1"
    host = inspect.signature(cli_infra.broker).parameters["host"].default
    assert host == "127.0.0.1"


# --- no pickle, no code-carrying formats ----------------------------------------------------

CODE_LOADING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
CODE_LOADING_MODULES |= {"marshal", "jsonpickle"}
ALLOWED_PICKLE_NAMES = {"UnpicklingError", "PicklingError"}  # error types only


def _sources() -> list[Path]:
    files = [p for d in ("stream", "model", "export") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 20
    return files


def _keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "dynamic"
    return None


def violations(source: str) -> list[str]:
    """What in ``source`` could load code: pickle-like modules (beyond their error types),
    eval/exec, torch.load without weights_only=True, np.load with pickles, yaml.load."""
    tree = ast.parse(source)
    problems: list[str] = []
    modules: dict[str, str] = {}  # local name -> code-loading module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in CODE_LOADING_MODULES:
                    modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in CODE_LOADING_MODULES:
                for alias in node.names:
                    if alias.name not in ALLOWED_PICKLE_NAMES:
                        problems.append(
                            f"line {node.lineno}: from {node.module} import {alias.name}"
                        )
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("eval", "exec", "builtins.eval", "builtins.exec"):
                problems.append(f"line {node.lineno}: {func}()")
            if func.endswith("torch.load") and _keyword(node, "weights_only") is not True:
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
            if func in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") not in (
                None,
                False,
            ):
                problems.append(f"line {node.lineno}: np.load allowing pickles")
            if func == "yaml.load" or func == "yaml.unsafe_load":
                problems.append(f"line {node.lineno}: {func} (use yaml.safe_load)")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr not in ALLOWED_PICKLE_NAMES
        ):
            problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return problems


def test_no_pickle_or_code_loading_anywhere() -> None:
    found = {
        str(path.relative_to(REPO)): problems
        for path in _sources()
        if (problems := violations(path.read_text()))
    }
    assert found == {}


@pytest.mark.parametrize(
    "bad",
    [
        "import pickle\npickle.loads(b'')",
        "import pickle as p\np.load(open('f', 'rb'))",
        "from pickle import load",
        "import joblib\njoblib.load('m')",
        "import torch\ntorch.load('m.pt')",
        "import torch\ntorch.load('m.pt', weights_only=False)",
        "import numpy as np\nnp.load('a.npz', allow_pickle=True)",
        "import yaml\nyaml.load(text)",
        "eval('1')",
    ],
)
def test_the_scan_finds_what_it_forbids(bad: str) -> None:
    assert violations(bad), bad


def test_the_scan_allows_what_is_safe() -> None:
    ok = (
        "import pickle\n"
        "try:\n    pass\nexcept pickle.UnpicklingError:\n    pass\n"
        "import torch\ntorch.load('m.pt', weights_only=True, map_location='cpu')\n"
        "import numpy as np\nnp.load('a.npz', allow_pickle=False)\nnp.load('b.npy')\n"
        "model.eval()\n"
    )
    assert violations(ok) == []
