"""A syslog collector over TCP with octet-counting framing (RFC 6587) that parses every
message with syslog-rfc5424-parser and keeps it as one JSON line in a file.

usage: python3 syslog_sink.py OUT.jsonl [PORT]   (PORT 0 or absent: any free port)
Prints the port it listens on, then serves until killed.
"""

import asyncio
import json
import sys

from syslog_rfc5424_parser import SyslogMessage


async def collect(path, reader, writer):
    try:
        while True:
            length = await reader.readuntil(b" ")
            frame = await reader.readexactly(int(length[:-1]))
            text = frame.decode("utf-8")
            try:
                record = SyslogMessage.parse(text).as_dict()
                if record.get("msg", "").startswith("\ufeff"):
                    record["msg"] = record["msg"][1:]
                    record["bom"] = True
            except Exception as e:  # a message the parser refuses is kept as such
                record = {"error": str(e), "raw": text}
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    path = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = await asyncio.start_server(lambda r, w: collect(path, r, w), "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
