"""A light client for ecrd, for POS apps: the standard library only.

    from ecrd_client import Client, TimeoutOutcomeUnknown, EcrdError

    with Client("/run/ecrd/ecrd.sock") as ecr:
        try:
            tx = ecr.sale("counter-1", "10.20", "HKD", reference_id=order.payment_id)
        except TimeoutOutcomeUnknown:
            ...  # the card MAY have been charged: check, retry with the SAME reference_id
        except EcrdError as e:
            print(e.reason, e.message)
        else:
            print(tx["state"])  # "succeeded", or "failed" (declined)

Always send your own ``reference_id`` and reuse it when you retry after a crash or a
timeout: ecrd then returns the first attempt's result instead of charging again.
"""

from ecrd_client._api import *  # noqa: F403 - the methods' shapes and the error classes
from ecrd_client._api import BY_REASON, Methods
from ecrd_client._base import ConnectionLost, EcrdError, HttpRefused
from ecrd_client.client import DEFAULT_SOCKET, Client, error_from

__version__ = "0.1.0"
__all__ = [
    "BY_REASON",
    "DEFAULT_SOCKET",
    "Client",
    "ConnectionLost",
    "EcrdError",
    "HttpRefused",
    "Methods",
    "error_from",
]
