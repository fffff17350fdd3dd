#!/usr/bin/python3
"""Plot scripts/bench-occupancy.sh's CSV: Mpps against established flows in the table,
weir beside dpdk-testpmd rxonly (needs python3-matplotlib).

usage: scripts/plot-occupancy.py bench/occupancy.csv bench/occupancy.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no rows")
    flows = [int(r["flows"]) for r in rows]
    weir = [float(r["weir_mpps"]) for r in rows]
    rx = [float(r["testpmd_rxonly_mpps"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(flows, rx, "s--", color="grey", label="dpdk-testpmd rxonly (rx + free)")
    ax.plot(flows, weir, "o-", color="tab:blue",
            label="weir (rx + parse + classify + enqueue + drain + free)")
    ax.plot(flows, [r / 2 for r in rx], ":", color="tab:red", label="goal: half of rxonly")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("established flows in the flow table (2^22 slots)")
    ax.set_ylabel("Mpps, one lcore, net_pcap")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Receive rate against flow-table occupancy")
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
