"""The cli tests' pseudo-terminal: runs a program with stdin, stdout and stderr on a pty
(optionally COLUMNS wide, as a terminal window says it) and returns (status, what the
terminal showed). Bounded: a program silent for 60 s is killed."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios


def on_a_terminal(argv, env=None, columns=None):
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            p.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=60), out.decode(errors="replace")
