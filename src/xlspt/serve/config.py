"""How ``xlspt serve`` listens, batches and bounds its work: one config, each default stated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError

#: The environment variable that sets the API key when ``--api-key`` is not given.
API_KEY_ENV = "XLSPT_API_KEY"


@dataclass
class ServeConfig:
    """The server's settings (the command line maps each field to its flag: ``batch_window_ms`` -> ``--batch-window-ms``)."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "the address to listen on; anything but loopback exposes the model to the network: set an API key"})
    port: int = field(default=8000, metadata={"help": "the TCP port (0: a free one, printed at start)"})
    batch_window_ms: float = field(default=5.0, metadata={
        "help": "how long the first waiting request waits for others to share its pass (0: no wait)"})
    max_batch_requests: int = field(default=64, metadata={
        "help": "requests scored together in one pass at most (1: one at a time)"})
    max_batch_texts: int = field(default=256, metadata={"help": "texts scored together in one pass at most"})
    max_texts: int = field(default=256, metadata={"help": "texts in one request at most, unlabeled ones included (more: 413)"})
    max_request_bytes: int = field(default=1 << 20, metadata={"help": "bytes of one request body at most (more: 413)"})
    max_queue_texts: int = field(default=4096, metadata={
        "help": "texts waiting to be scored at most; beyond it requests get 503 with Retry-After"})
    timeout_s: float = field(default=30.0, metadata={
        "help": "seconds a request may wait for its answer (then 504)"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass of the model"})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "host":
                if not value:
                    raise ConfigError("host", "give an address to listen on, e.g. 127.0.0.1")
            elif f.name in ("port", "batch_window_ms"):
                if not 0 <= value <= (65535 if f.name == "port" else 10_000):
                    raise ConfigError(f.name, f"must be between 0 and {65535 if f.name == 'port' else 10_000} (got {value})")
            elif value <= 0:
                raise ConfigError(f.name, f"must be positive (got {value})")
        if self.max_queue_texts < self.max_texts:
            raise ConfigError("max_queue_texts", f"must hold one request of --max-texts {self.max_texts} at least")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
