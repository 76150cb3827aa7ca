#!/usr/bin/env python3
"""drive_tty.py ANSWER CMD...: runs CMD on a pseudo-terminal, types ANSWER
when it asks for a password, and prints what the terminal showed; exits
with CMD's status."""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, sent = b"", False
end = time.time() + 60
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            b = os.read(fd, 4096)
        except OSError:
            break
        if not b:
            break
        out += b
    if not sent and b"assword" in out:
        time.sleep(0.2)
        os.write(fd, sys.argv[1].encode() + b"\n")
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode("latin-1"))
sys.exit(os.waitstatus_to_exitcode(st))
