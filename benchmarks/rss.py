"""Peak resident memory of this process, for the benchmarks that compare two sides' memory (Linux /proc)."""

from __future__ import annotations


def status_kb(key: str) -> int:
    """A /proc/self/status field in kB (e.g. VmHWM, the RSS high-water mark); 0 where it cannot be read."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak that follows is the work's, not the set-up's.
    False where the kernel refuses (the peak then includes everything before)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
