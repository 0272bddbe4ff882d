"""Child processes the tools and the tests start (receivers, brokers,
virtual boards): one way to stop them."""
import subprocess


def stop_process(process, grace_s=10):
    """SIGTERM, up to grace_s seconds to exit cleanly, then SIGKILL; reaped
    either way. None or a process that has exited: nothing to do."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
