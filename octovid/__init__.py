"""octovid: an asyncio client for the octopusx video-generation gateway.

Submit many video tasks at once; one watcher polls them all under one shared rate limiter and
resolves one future per task::

    async with octovid.Client() as client:
        jobs = client.submit_many([octovid.SoraRequest("a cat surfing")] * 10)
        for task in await octovid.gather(jobs):
            print(task.video_url)
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

from ._client import Client, Stats
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    CreateUncertainError,
    DownloadError,
    InsufficientQuotaError,
    JournalError,
    OctovidError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    WaitTimeoutError,
)
from ._events import Answered, Event, JobFinished, Paused, RateLimited, RequestSent
from ._jobs import Job, as_completed, gather
from ._journal import Journal, JournalEntry
from ._limiter import RateLimit
from ._requests import (
    GrokRequest,
    JimengRequest,
    KlingRequest,
    LocalImage,
    RemixRequest,
    Request,
    SeedanceRequest,
    SoraRequest,
    SoraVideosRequest,
    Upload,
    VeoRequest,
    VeoVideosRequest,
    VideoRequest,
    ViduRequest,
    request_from_dict,
)
from ._retry import RetryPolicy
from ._routes import Route
from ._schedule import PollPolicy
from ._task import Status, Task

try:
    __version__ = _version("octovid")
except _NotInstalled:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "APIError",
    "Answered",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConfigError",
    "CreateUncertainError",
    "DownloadError",
    "Event",
    "GrokRequest",
    "InsufficientQuotaError",
    "JimengRequest",
    "Job",
    "JobFinished",
    "Journal",
    "JournalEntry",
    "JournalError",
    "KlingRequest",
    "LocalImage",
    "OctovidError",
    "Paused",
    "PermissionDeniedError",
    "PollPolicy",
    "ProtocolError",
    "RateLimit",
    "RateLimitError",
    "RateLimited",
    "RemixRequest",
    "Request",
    "RequestSent",
    "RequestValidationError",
    "RetryPolicy",
    "Route",
    "SeedanceRequest",
    "ServerError",
    "SoraRequest",
    "SoraVideosRequest",
    "Stats",
    "Status",
    "Task",
    "TaskFailedError",
    "TaskNotFoundError",
    "TransportError",
    "Upload",
    "VeoRequest",
    "VeoVideosRequest",
    "VideoRequest",
    "ViduRequest",
    "WaitTimeoutError",
    "__version__",
    "as_completed",
    "gather",
    "request_from_dict",
]
