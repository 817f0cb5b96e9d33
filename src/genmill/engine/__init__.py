"""The task engine: the one owner of a task's life on the server.

`TaskEngine` is what clients do to tasks (create, read, cancel); `WorkerGate` is what workers do to them (claim,
heartbeat, complete, fail, read inputs, store outputs), with the lease, pool and input-reference checks held once
for both the in-process transport (`LocalTransport`) and the HTTP worker protocol. `ServedEntries` answers which
entries some worker can run now and which a create accepts (served recently, declared), and fails the tasks that
waited too long for one; `Accounts`, who a key belongs to and what it holds. The API maps HTTP onto these;
the worker side (runtime, HTTP transport) imports none of this, nor the store.
"""

from genmill.engine.accounts import Accounts
from genmill.engine.gate import Registration, WorkerGate, WorkerIdentity
from genmill.engine.local import LocalTransport
from genmill.engine.serving import ServedEntries
from genmill.engine.tasks import TaskEngine

__all__ = ["Accounts", "LocalTransport", "Registration", "ServedEntries", "TaskEngine", "WorkerGate", "WorkerIdentity"]
