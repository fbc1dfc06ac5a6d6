"""Link schedules from the command line: "AT:FRACTION[:RTT_MS[:LOSS]]" items, comma-separated.

`60:0.25` cuts the line to a quarter of its capacity at 60 s, `120:1` restores it, `90:0` drops it
(down: offloads stop, transfers stall), `30:1:80:0.001` keeps the rate but sets an 80 ms RTT and
0.1 % loss. Times are simulated seconds from the first arrival.
"""

from __future__ import annotations

from prfaas.tools.sim.link import LinkChange


def parse_link_schedule(text: str) -> tuple[LinkChange, ...]:
    changes = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        parts = item.split(":")
        if not 2 <= len(parts) <= 4:
            raise ValueError(f"link schedule item {item!r}: want AT:FRACTION[:RTT_MS[:LOSS]]")
        rtt = float(parts[2]) / 1000 if len(parts) > 2 and parts[2] else None
        loss = float(parts[3]) if len(parts) > 3 else None
        fraction = float(parts[1])
        if fraction < 0:
            raise ValueError(f"link schedule item {item!r}: negative capacity")
        changes.append(LinkChange(float(parts[0]), fraction, rtt, loss))
    return tuple(sorted(changes, key=lambda c: c.at_s))
