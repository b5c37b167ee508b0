"""A long-lived ClientApp process for one SuperNode: TensorFlow and the experiment are loaded once, not per message.

Flower 1.42's ``flower-supernode`` starts a fresh ``flwr-clientapp`` process
for every message by default (15 s of TensorFlow import each). With
``--isolation process`` it starts none and waits for an executor to claim its
tasks on its Runtime HTTP API: this is that executor. It claims one task at a
time and runs it in this process with the functions ``flwr-clientapp`` uses
(``pull_task_input``, the app, ``push_message``, ``push_task_output``), so the
imported modules and the app's module-level state (the rebuilt experiment,
the compiled model) serve every later message.

    python -m fedsim.deploy.worker --runtime-api-address 127.0.0.1:PORT --parent-pid SUPERNODE_PID
"""

import argparse
import logging
import os
import time
from pathlib import Path

from flwr.app import Error, Message
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest, SendTaskHeartbeatRequest
from flwr.supercore import log
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output


def runtime_client(address: str, *interceptors) -> RuntimeHttpClient:
    """A client of the SuperNode's Runtime HTTP API (plain HTTP: loopback)."""
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=True, root_certificates=None,
                                                 interceptors=list(interceptors),
                                                 retry_invoker=make_simple_http_retry_invoker())


class Worker:
    """Claims the ClientApp tasks of one SuperNode and runs each in this process."""

    def __init__(self, address: str):
        self.address = address
        self.apps: dict[str, object] = {}  # FAB hash -> its loaded ClientApp (installed once)
        self.load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)

    def client_app(self, run, fab):
        """The run's ClientApp, installed into $FLWR_HOME/apps and loaded on its first task."""
        if fab.hash_str not in self.apps:
            install_from_fab(fab.content, skip_prompt=True)
            self.apps[fab.hash_str] = self.load(run.fab_id, run.fab_version, fab.hash_str)
        return self.apps[fab.hash_str]

    def run_task(self, token: str) -> None:
        """Execute one claimed task; a failing ClientApp becomes an error reply, never the end of the worker."""
        client = runtime_client(self.address, RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                                RuntimeTokenHttpInterceptor(token))
        abandoned = []

        def heartbeat() -> bool:
            try:
                alive = client.SendTaskHeartbeat(SendTaskHeartbeatRequest()).success
            except Exception:  # noqa: BLE001  (retried with backoff by HeartbeatSender)
                return False
            if not alive:
                abandoned.append(True)  # the run was stopped or the task expired: send no reply
            return True

        beat = HeartbeatSender(heartbeat)
        beat.start()
        message = context = reply = None
        sub_status, details = SubStatus.FAILED, "ClientApp task failed"
        try:
            message, context, run, fab = pull_task_input(client)
            reply = self.client_app(run, fab)(message=message, context=context)
            sub_status, details = SubStatus.COMPLETED, ""
        except Exception as error:  # noqa: BLE001  (reported to the server as an error reply)
            log(logging.ERROR, "ClientApp raised an exception", exc_info=error)
            code = (ErrorCode.LOAD_CLIENT_APP_EXCEPTION if isinstance(error, LoadClientAppError)
                    else ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
            details = f"{type(error)}:<'{error}'>"
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None and not abandoned:
                    push_message(client, reply, context)
            finally:
                push_task_output(client=client, context=context, sub_status=sub_status, details=details)
                beat.stop()
                client.close()

    def serve(self, poll_interval: float) -> None:
        """Claim and run tasks until stopped."""
        acquire = runtime_client(self.address, RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        while True:
            task = acquire.AcquireTask(request)
            if task.HasField("task") and task.token:
                self.run_task(task.token)
            else:
                time.sleep(poll_interval)


def main() -> None:
    """Preload fedsim (and TensorFlow), say so in ``--ready-file``, then serve the SuperNode's tasks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's --host:--port")
    parser.add_argument("--parent-pid", type=int, help="stop when this process (the SuperNode) is gone")
    parser.add_argument("--ready-file", help="created once fedsim is imported")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    args = parser.parse_args()
    if args.parent_pid:
        start_parent_process_monitor(args.parent_pid)
    import fedsim._tf  # noqa: F401  (TensorFlow set up and fedsim imported, once for every message)

    if args.ready_file:
        Path(args.ready_file).touch()
    log(logging.INFO, "fedsim ClientApp worker %s ready for %s", os.getpid(), args.runtime_api_address)
    try:
        Worker(args.runtime_api_address).serve(args.poll_interval)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
