"""All of genmill's settings in one place, read from `GENMILL_*` environment variables.

Nothing reads the environment anywhere else: the composition root (`genmill.app.create_app`) receives a
`Settings` and passes what each piece needs to its constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genmill.domain.placement import DEFAULT_MARGIN_BYTES, normalize_device, parse_memory_overrides
from genmill.domain.waiting import DEFAULT_MAX_PENDING_SECONDS, QueuePolicy

if TYPE_CHECKING:
    from genmill.backends.diffusers_loading import Placement
    from genmill.worker.backendset import StandIns


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENMILL_", extra="ignore")

    data_dir: Path = Field(Path("./genmill-data"), description="Local folder for the SQLite database and blobs.")
    models_dir: Path = Field(
        Path("./genmill-models"),
        description="Folder of model weights, one folder per weight set (docs/weights.md); `genmill models pull` "
        "downloads into it.",
    )
    database_url: str = Field("", description="SQLAlchemy URL; empty means sqlite in data_dir.")
    public_url: str = Field("", description="Base URL clients use to reach this server (for output URLs).")
    host: str = "127.0.0.1"
    port: int = 8000

    workers: int = Field(1, ge=0, description="In-process worker slots; 0 runs an API-only server.")
    processes: int = Field(
        0,
        ge=0,
        description="API processes of `genmill serve` on one port; 0: one per core on PostgreSQL, 1 on SQLite "
        "(docs/deploy.md, several API processes).",
    )
    backends: str = Field("", description="Comma-separated backend names to enable; empty means all available.")
    echo_price_credits: int = Field(0, ge=0, description="Price of a genmill/echo task (free by default).")
    device: str = Field(
        "auto",
        pattern=r"^(auto|(cpu|cuda(:\d+)?)(,(cpu|cuda(:\d+)?))*)$",
        description="Where this process's workers run the models: cpu, cuda:N, a list such as cuda:0,cuda:1 (each "
        "device gets GENMILL_WORKERS worker slots and its own models), or auto (the first GPU, else cpu).",
    )
    cpu_memory_budget_mb: int = Field(0, ge=0, description="Model cache budget in CPU RAM; 0 means unlimited.")
    gpu_memory_budget_mb: int = Field(
        0, ge=0, description="Model cache budget per GPU; 0 means the GPU's free memory at start less the margin."
    )
    gpu_memory_margin_mb: int = Field(
        DEFAULT_MARGIN_BYTES // (1024 * 1024),
        ge=0,
        description="GPU memory kept free for activations and the CUDA context when the budget is auto.",
    )
    memory_modes: str = Field(
        "",
        description="Memory mode and quantisation per backend, e.g. `flux1-dev=model-offload,*=gpu` (docs/gpu.md); "
        "empty chooses from each GPU's size.",
    )
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="How long a worker waits to fill a batch.")
    lease_seconds: float = Field(60.0, gt=0, description="How long a claim lasts without a heartbeat.")
    heartbeat_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(3, ge=1, description="Claims a task gets before it fails with a refund.")
    reaper_seconds: float = Field(5.0, gt=0, description="How often expired leases and blobs are swept.")

    private_pool_price_factor: float = Field(
        0.0, ge=0, description="Share of the list price charged for tasks run on an account's own workers."
    )
    worker_seen_seconds: float = Field(
        60.0,
        gt=0,
        description="A remote worker counts as serving its entries right now this long after it was last seen (it is "
        "seen on every claim, about every 20 s, and every heartbeat; the time stored is at most 5 s old).",
    )
    served_recently_seconds: float = Field(
        3600.0,
        gt=0,
        description="Tasks for an entry a remote worker served within this long are queued while no worker serves it "
        "(a restart, a rolling deploy) instead of being refused.",
    )
    queue_models: str = Field(
        "",
        description="Entries whose tasks queue even when no worker serves them yet: `*`, or comma-separated `model` "
        "or `model/task_type` items.",
    )
    max_pending_seconds: str = Field(
        str(int(DEFAULT_MAX_PENDING_SECONDS)),
        description="How long a pending task may wait with no worker serving its entry before it fails (code 10004, "
        "credits released): seconds, then per entry `model=seconds` or `model/task_type=seconds`, comma-separated.",
    )

    server_url: str = Field("", description="For `genmill worker`: the genmill API it pulls work from.")
    worker_token: str = Field("", repr=False, description="For `genmill worker`: its worker token.")

    upstream_url: str = Field("", description="A PiAPI-compatible API to forward GENMILL_UPSTREAM_MODELS to.")
    upstream_api_key: str = Field("", repr=False, description="The operator's key for GENMILL_UPSTREAM_URL.")
    upstream_models: str = Field(
        "", description="Comma-separated `model` or `model/task_type` entries to forward; empty forwards none."
    )

    lyrics_base_url: str = Field(
        "",
        description="An OpenAI-compatible chat server (vLLM, Ollama, llama.cpp) that writes Udio's and Suno's "
        "lyrics (generate_lyrics, lyrics_type generate); empty: those tasks are refused (docs/music-services.md).",
    )
    lyrics_model: str = Field("", description="The model name GENMILL_LYRICS_BASE_URL knows the lyrics model by.")
    lyrics_api_key: str = Field("", repr=False, description="The key for GENMILL_LYRICS_BASE_URL, if it needs one.")

    auth_cache_seconds: float = Field(
        10.0, ge=0, description="How long a process trusts a checked API key before checking it again (0: always)."
    )
    allow_private_urls: bool = Field(False, description="Let input URLs reach private/loopback addresses.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or one JSON object per line with the request id (read by `genmill` at start).",
    )
    fetch_timeout: float = Field(
        20.0, gt=0, description="Total seconds for one input download: lookup, connect, headers and body together."
    )
    max_input_bytes: int = Field(20 * 1024 * 1024, description="Cap on one fetched or inline input file.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, description="Cap on one decoded ephemeral upload.")
    max_request_bytes: int = Field(32 * 1024 * 1024, description="Cap on any request body.")
    max_staged_per_account: int = 50
    group_commit: bool = Field(
        True,
        description="Creates that arrive while another create commits share the next transaction and its commit "
        "(each caller still answered only after its own task committed); false: one transaction per create.",
    )

    # Limits on connections and use (docs/deploy.md "Limits"). Rates and streams are per server process.
    keep_alive_seconds: int = Field(5, ge=1, description="An idle keep-alive connection is closed after this.")
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection is closed unless it sends a complete request head within this many seconds of "
        "opening or of its previous answer.",
    )
    max_connections: int = Field(
        2048,
        ge=16,
        description="Open client connections per process; beyond it the longest-idle ones are closed, or a new one "
        "gets a 503. Lowered to fit the open-file limit.",
    )
    rate_limit_creates_per_second: float = Field(
        20.0, ge=0, description="Task creates and uploads per API key; 0: off."
    )
    rate_limit_creates_burst: int = Field(40, ge=0, description="Creates an API key may make at once.")
    rate_limit_reads_per_second: float = Field(100.0, ge=0, description="Other requests per API key; 0: off.")
    rate_limit_reads_burst: int = Field(200, ge=0, description="Other requests an API key may make at once.")
    free_tasks_per_second: float = Field(
        1.0, ge=0, description="Tasks of price 0 on the public pool per account (genmill/echo by default); 0: off."
    )
    free_tasks_burst: int = Field(30, ge=0, description="Free tasks an account may create at once.")
    max_task_input_bytes: int = Field(
        1024 * 1024, ge=0, description="A task's input as stored JSON; larger inputs get a 413 (0: no limit)."
    )
    max_streams_per_account: int = Field(
        100, ge=0, description="Open event streams plus `Prefer: wait` requests per account; beyond: 429 (0: off)."
    )

    webhook_concurrency: int = Field(4, ge=1, description="Deliveries sent at once by this process.")
    webhook_timeout: float = Field(
        15.0, gt=0, description="Total seconds one delivery may take: lookup, connect, sending, status and headers."
    )
    webhook_account_concurrency: int | None = Field(
        None,
        ge=1,
        description="Deliveries of one account sent at once by this process; unset: GENMILL_WEBHOOK_CONCURRENCY - 1.",
    )
    webhook_retry_scale: float = Field(1.0, gt=0, description="Multiplies the retry schedule (tests shrink it).")
    event_retention_days: float = Field(7.0, gt=0, description="How long settled task events are kept.")

    blob_store: Literal["local", "s3"] = Field("local", description="Where files live: a local folder or S3.")
    s3_bucket: str = Field("", description="Bucket name; required when blob_store is s3.")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, R2…); empty means AWS.")
    s3_region: str = Field("", description="Region; empty means boto3's default chain.")
    s3_access_key_id: str = Field("", description="Empty means boto3's credential chain (env, profile, role).")
    s3_secret_access_key: str = Field("", repr=False, description="Empty means boto3's credential chain.")
    s3_prefix: str = Field("", description="Key prefix (folder) inside the bucket, to share one bucket.")
    s3_presign: bool = Field(True, description="Answer presigned S3 URLs instead of /files/ URLs.")

    realesrgan_gpuid: Literal["auto"] | Annotated[int, Field(ge=-1)] = Field(
        "auto",
        description="Real-ESRGAN's ncnn Vulkan device: a GPU index, -1 for the CPU, or auto (the first GPU if any).",
    )
    upscale_model: Literal["photo", "photo-sharp", "anime"] = Field(
        "photo",
        description="Real-ESRGAN network for image and video upscale: photo (x4plus, corrected to shrink back to "
        "the input), photo-sharp (raw x4plus) or anime (realesr-animevideov3, fast); a task's upscale_model "
        "overrides it.",
    )
    video_upscale: Literal["realesrgan", "lanczos"] = Field(
        "realesrgan",
        description="Video upscale: Real-ESRGAN on every frame, or lanczos (ffmpeg's 2x resize, fast, no super-"
        "resolution); a task's upscale_mode overrides it.",
    )
    stand_ins: str = Field(
        "none",
        description="Which stand-ins may serve an entry with another model than the one it names (MusicGen for "
        "ACE-Step): none, all, or a comma-separated list of backend names, models or model/task_type entries "
        "(docs/backends.md).",
    )

    llm_models: str = Field(
        "",
        repr=False,
        description="JSON object: chat model name → {base_url, model, api_key, timeout} of an OpenAI-compatible "
        "server, or {path, device} of a local transformers folder; optional stand_in (docs/api.md).",
    )
    llm_prices: str = Field(
        "",
        description="JSON object: chat model name → {input, output} US dollars per million tokens, over PiAPI's "
        "prices; a new name adds a chat model to the catalog.",
    )
    llm_max_tokens: int = Field(
        4096, ge=1, le=1_000_000, description="Completion tokens a chat call may use when it names no max_tokens."
    )

    @field_validator("llm_models")
    @classmethod
    def _llm_models_parse(cls, value: str) -> str:
        from genmill.models.llm.config import parse_model_settings

        parse_model_settings(value)  # a bad item stops the server at start, naming it
        return value

    @field_validator("llm_prices")
    @classmethod
    def _llm_prices_parse(cls, value: str) -> str:
        from genmill.models.llm.config import parse_prices

        parse_prices(value)
        return value

    @field_validator("device")
    @classmethod
    def _devices_once(cls, value: str) -> str:
        devices = [normalize_device(d) for d in value.split(",")]
        if len(set(devices)) != len(devices):
            raise ValueError(f"{value!r} names a device twice")
        return value

    @field_validator("memory_modes")
    @classmethod
    def _memory_modes_parse(cls, value: str) -> str:
        parse_memory_overrides(value)  # a typo stops the server at start, naming the bad part
        return value

    @field_validator("stand_ins")
    @classmethod
    def _stand_ins_parse(cls, value: str) -> str:
        from genmill.worker.backendset import StandIns

        StandIns.parse(value)  # "all,musicgen" stops the server at start, naming the problem
        return value

    @field_validator("max_pending_seconds")
    @classmethod
    def _max_pending_parse(cls, value: str) -> str:
        QueuePolicy.parse(max_pending=value)  # "wanx=ten" stops the server at start, naming the bad item
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"GENMILL_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g}) must be shorter than GENMILL_LEASE_SECONDS "
                f"({self.lease_seconds:g}), or every running task would lose its lease"
            )
        return self

    def memory_budgets(self) -> dict[str, int]:
        """Model cache budgets by kind of device; -1 (`genmill.worker.model_cache.AUTO`) means the device's free
        memory when the first model loads, less `gpu_memory_margin_mb`."""
        mib = 1024 * 1024
        return {"cpu": self.cpu_memory_budget_mb * mib, "cuda": self.gpu_memory_budget_mb * mib or -1}

    def devices(self) -> list[str]:
        """The devices of GENMILL_DEVICE, in order ("cuda" is the first GPU)."""
        return [normalize_device(d) for d in self.device.split(",")]

    def placement(self, device: str | None = None) -> Placement:
        """Where and how this process's diffusers backends load their models on `device` (the first of
        GENMILL_DEVICE when None)."""
        from genmill.backends.diffusers_loading import Placement

        return Placement(
            device or self.devices()[0],
            memory_modes=self.memory_modes,
            margin_bytes=self.gpu_memory_margin_mb * 1024 * 1024,
        )

    def queue_policy(self) -> QueuePolicy:
        """GENMILL_QUEUE_MODELS and GENMILL_MAX_PENDING_SECONDS, parsed (names are checked against the catalog
        when the server builds it)."""
        return QueuePolicy.parse(self.queue_models, self.max_pending_seconds)

    def stand_in_policy(self) -> StandIns:
        """GENMILL_STAND_INS, parsed."""
        from genmill.worker.backendset import StandIns

        return StandIns.parse(self.stand_ins)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'genmill.db').resolve()}"

    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    def base_url(self) -> str:
        """The URL prefix for links in API answers (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"
