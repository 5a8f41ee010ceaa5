"""Turn a stream of per-inference class scores into keyword detections.

Runs unchanged on the boards (MicroPython, file /lib/kwsrt/recognizer.py) and on
the host (``kws_kit.device.kwsrt.recognizer``), where the streaming evaluation
uses this very class, so a threshold tuned on the host behaves the same on the
device. Only integers are used after construction, which is what makes host and
device agree exactly (boards have single-precision floats, the host double).

Scores are uint8 "probabilities" 0..255:
  * an int8 softmax output (TFLite always quantises softmax with scale 1/256 and
    zero point -128) gives ``score = q + 128`` (see ``int8_to_scores``);
  * a float probability p gives ``score = min(255, floor(p * 256))``
    (see ``probs_to_scores``).

Algorithm (in the spirit of TFLM micro_speech's RecognizeCommands):
  1. Keep the results whose age is below ``average_window_ms`` (a result at time t
     is dropped once ``now - t >= average_window_ms``), in a preallocated ring of
     ``max_results`` slots (when the ring is full the oldest result is dropped).
  2. Integer per-class sums over the window; average = sum // count.
  3. Top class = largest sum; ties go to the lowest class index.
  4. Report a detection when all of these hold:
       - at least ``minimum_count`` results are in the window,
       - the top class is not an ignored label (``_silence_``, ``_unknown_``...),
       - its average >= the integer threshold score,
       - at least ``suppression_ms`` have passed since the last detection (of any
         label),
       - the top class is not "latched" (see below).
     The latch is released when the latched label's window average drops below
     the threshold, or when the window empties (no result for a whole window).

Differences from micro_speech, on purpose:
  * micro_speech lets a *different* label fire immediately after a detection and
    the *same* label fire again once the suppression time has passed. Here the
    suppression time applies to every label, and in addition the label that
    fired stays latched until its window average falls below the threshold. One
    long or slowly-fading utterance therefore fires once, even when its average
    stays high for longer than ``suppression_ms``; saying the word again after a
    pause re-arms it. A word repeated with no pause ("go go go") fires once.
  * The window is strictly "younger than average_window_ms", so the default
    750 ms window at a 250 ms inference period holds exactly 3 results.
  * No floating point after construction: the threshold is converted once with
    the same rule as ``probs_to_scores``.

Times are integer milliseconds that must never go backwards (ValueError). On a
board pass a running total built from ``time.ticks_diff`` rather than raw
``ticks_ms()``, which wraps around.
"""

SCORE_MAX = 255


def prob_to_score(p):
    """One float probability -> uint8 score: floor(p * 256) clamped to 0..255.

    Multiplying by 256 is exact in binary floating point, so single-precision
    boards and the double-precision host give the same score for the same stored
    value. A decimal such as 0.7 is stored slightly differently in single and
    double precision; that changes the score only when p * 256 is within about
    1e-5 of an integer, which no threshold written with up to three decimals is.
    NaN counts as 0.
    """
    if p != p:  # NaN
        return 0
    if p <= 0:
        return 0
    if p >= 1:
        return SCORE_MAX
    s = int(p * 256)  # truncation == floor for non-negative values
    if s > SCORE_MAX:
        return SCORE_MAX
    return s


def probs_to_scores(probs):
    """Float probabilities (any iterable) -> list of uint8 scores."""
    return [prob_to_score(p) for p in probs]


def int8_to_scores(values):
    """int8 softmax outputs (zero point -128, scale 1/256) -> list of uint8 scores."""
    out = []
    for q in values:
        s = int(q) + 128
        if s < 0 or s > SCORE_MAX:
            raise ValueError("int8 value out of range: {}".format(q))
        out.append(s)
    return out


class Recognizer:
    """Average recent scores and decide when a keyword was heard.

    labels              class names in model output order.
    average_window_ms   results younger than this are averaged (750: three
                        results at a 250 ms inference period; a 1 s model window
                        sees a whole 0.5 s word in only 2-3 inferences, so a longer
                        window mostly dilutes it).
    detection_threshold probability 0..1 the window average of the top class must
                        reach; stored as ``threshold_score`` = prob_to_score(value).
                        0.6 is a starting point; tune it on a streaming sweep.
    suppression_ms      no detection of any label within this time after one (1500).
    minimum_count       results needed in the window before deciding (2: still
                        works on a board slower than 250 ms; the window must hold
                        at least this many results at the real inference period).
    ignore_labels       names that never trigger (default ``_silence_``, ``_unknown_``).
    max_results         ring capacity; must cover average_window_ms / period (32).
    """

    def __init__(self, labels, average_window_ms=750, detection_threshold=0.6,
                 suppression_ms=1500, minimum_count=2,
                 ignore_labels=("_silence_", "_unknown_"), max_results=32):
        labels = list(labels)
        if not labels:
            raise ValueError("labels must not be empty")
        if average_window_ms <= 0:
            raise ValueError("average_window_ms must be > 0")
        if suppression_ms < 0:
            raise ValueError("suppression_ms must be >= 0")
        if not (0 <= detection_threshold <= 1):
            raise ValueError("detection_threshold must be a probability in 0..1")
        if max_results < 1:
            raise ValueError("max_results must be >= 1")
        if minimum_count < 1 or minimum_count > max_results:
            raise ValueError("minimum_count must be in 1..max_results")
        self.labels = labels
        self.average_window_ms = average_window_ms
        self.detection_threshold = detection_threshold
        self.threshold_score = prob_to_score(detection_threshold)
        self.suppression_ms = suppression_ms
        self.minimum_count = minimum_count
        self.max_results = max_results
        n = len(labels)
        self._n = n
        # 1 for labels that may never trigger.
        self._ignored = bytearray(n)
        for i in range(n):
            if labels[i] in ignore_labels:
                self._ignored[i] = 1
        self.ignore_labels = tuple(labels[i] for i in range(n) if self._ignored[i])
        # Ring of results: times, and scores flattened slot-major (slot * n + class).
        self._times = [0] * max_results
        self._ring = bytearray(max_results * n)
        self._sums = [0] * n
        self.reset()

    def reset(self):
        """Forget every result, the last detection and the clock."""
        sums = self._sums
        for i in range(self._n):
            sums[i] = 0
        self._head = 0
        self.count = 0
        self._last_time = None
        self._last_detection_ms = None
        self._latched = -1

    def averages(self, out=None):
        """Current window average per class (sum // count; zeros when empty).

        Pass a list of len(labels) as ``out`` to avoid allocating on the device.
        """
        n = self._n
        if out is None:
            out = [0] * n
        count = self.count
        sums = self._sums
        for i in range(n):
            out[i] = sums[i] // count if count else 0
        return out

    def update(self, scores, now_ms):
        """Add one inference result; return (label_index, avg_score) or None.

        ``scores``: len(labels) integers 0..255 (list, bytes, bytearray, array).
        ``now_ms``: time of the result in ms, never smaller than the last one.
        """
        n = self._n
        if len(scores) != n:
            raise ValueError("expected {} scores, got {}".format(n, len(scores)))
        last = self._last_time
        if last is not None and now_ms < last:
            raise ValueError("time went backwards: {} < {}".format(now_ms, last))
        # Validate before touching any state so that a bad call changes nothing
        # (min/max run in C on both CPython and MicroPython).
        low = min(scores)
        high = max(scores)
        if low < 0 or high > SCORE_MAX:
            raise ValueError("score out of range 0..255: {}".format(low if low < 0 else high))
        self._last_time = now_ms

        times = self._times
        ring = self._ring
        sums = self._sums
        cap = self.max_results
        head = self._head
        count = self.count
        oldest_kept = now_ms - self.average_window_ms  # drop results at or before this
        while count and times[head] <= oldest_kept:
            base = head * n
            for i in range(n):
                sums[i] -= ring[base + i]
            head += 1
            if head == cap:
                head = 0
            count -= 1
        if count == 0:
            # A whole window without results: nothing of the latched utterance is left.
            self._latched = -1
        elif count == cap:
            base = head * n
            for i in range(n):
                sums[i] -= ring[base + i]
            head += 1
            if head == cap:
                head = 0
            count -= 1

        slot = head + count
        if slot >= cap:
            slot -= cap
        times[slot] = now_ms
        base = slot * n
        for i in range(n):
            v = int(scores[i])  # int(): numpy uint8 would wrap inside the sums
            ring[base + i] = v
            sums[i] += v
        count += 1
        self._head = head
        self.count = count

        best = 0
        best_sum = sums[0]
        for i in range(1, n):
            if sums[i] > best_sum:
                best = i
                best_sum = sums[i]

        threshold = self.threshold_score
        latched = self._latched
        if latched >= 0 and sums[latched] // count < threshold:
            self._latched = latched = -1

        if count < self.minimum_count or self._ignored[best] or best == latched:
            return None
        avg = best_sum // count
        if avg < threshold:
            return None
        last_det = self._last_detection_ms
        if last_det is not None and now_ms - last_det < self.suppression_ms:
            return None
        self._last_detection_ms = now_ms
        self._latched = best
        return (best, avg)
