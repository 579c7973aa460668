// Online estimators of an endpoint's latency, on an injected clock: PeakEWMA (Finagle, Linkerd)
// and a plain time-weighted EWMA. Values are seconds. Each object has one writer: the worker
// that owns the endpoint's stats, or the control thread for probe figures.
#pragma once

#include <cmath>
#include <optional>

#include "meridian/common/clock.hpp"

namespace meridian::upstream {

// A sample above the estimate takes effect at once, so a backend that turns slow is avoided
// at its first slow answer; lower samples pull it down with time constant tau. Reading decays
// the estimate toward zero with the time since the last sample, so an endpoint that no
// longer gets traffic is tried again after a while and measured afresh. The decay is only
// in what a read shows: a sample blends with the stored estimate, so steady samples s keep
// it at s (blending with the decayed reading would settle at s / (1 + w), half of s under
// traffic, and let every ordinary sample count as a peak).
class peak_ewma {
 public:
  void observe(double v, common::time_point now, double tau_s) {
    if (!known_) {
      v_ = v;
      known_ = true;
    } else if (v > value(now, tau_s)) {
      v_ = v;
    } else {
      double w = std::exp(-elapsed(now) / tau_s);
      v_ = v_ * w + v * (1 - w);
    }
    stamp_ = now;
  }
  double value(common::time_point now, double tau_s) const {
    if (!known_) return 0;
    return v_ * std::exp(-elapsed(now) / tau_s);
  }
  bool known() const { return known_; }
  common::time_point stamp() const { return stamp_; }
  void reset() { *this = peak_ewma{}; }

 private:
  double elapsed(common::time_point now) const {
    double dt = common::seconds_between(stamp_, now);
    return dt > 0 ? dt : 0;
  }
  double v_ = 0;
  common::time_point stamp_{};
  bool known_ = false;
};

// Weighted by the time between samples: a burst of samples counts no more than the time it
// spans, so the estimate forgets at the same pace whatever the traffic.
class time_ewma {
 public:
  void observe(double v, common::time_point now, double tau_s) {
    if (!known_) {
      v_ = v;
      known_ = true;
    } else {
      double dt = common::seconds_between(stamp_, now);
      // A floor keeps samples that arrive together from counting for nothing.
      double w = std::exp(-(dt > 0.001 ? dt : 0.001) / tau_s);
      v_ = v_ * w + v * (1 - w);
    }
    stamp_ = now;
  }
  double value() const { return v_; }
  bool known() const { return known_; }
  common::time_point stamp() const { return stamp_; }

 private:
  double v_ = 0;
  common::time_point stamp_{};
  bool known_ = false;
};

// A straight line y = a + b x through samples (x, y), by least squares, each sample forgotten
// with time constant tau: the slope of latency against a load figure (prompt blocks to prefill,
// streams sharing a batch), per endpoint and pooled over a cluster. A slope is given only once
// the samples span enough of x to tell it from noise.
class linear_fit {
 public:
  void observe(double x, double y, common::time_point now, double tau_s) {
    if (known_) {
      double dt = common::seconds_between(stamp_, now);
      double w = std::exp(-(dt > 0 ? dt : 0) / tau_s);
      n_ *= w, x_ *= w, y_ *= w, xx_ *= w, xy_ *= w;
    }
    known_ = true;
    stamp_ = now;
    n_ += 1, x_ += x, y_ += y, xx_ += x * x, xy_ += x * y;
  }
  // The slope (never negative) once at least `min_samples` samples' worth have a variance of x
  // of `min_var` or more; nothing before.
  std::optional<double> slope(double min_samples, double min_var) const {
    if (n_ < min_samples) return std::nullopt;
    double var = xx_ / n_ - (x_ / n_) * (x_ / n_);
    if (var < min_var) return std::nullopt;
    double b = (xy_ / n_ - (x_ / n_) * (y_ / n_)) / var;
    return b > 0 ? b : 0;
  }
  double weight() const { return n_; }

 private:
  double n_ = 0, x_ = 0, y_ = 0, xx_ = 0, xy_ = 0;
  common::time_point stamp_{};
  bool known_ = false;
};

// Seconds a backend spends per prompt block it does not hold: the slope of latency samples
// against their uncached blocks, per endpoint, so mixed hardware learns its own rate. The prior
// holds until the samples span 2 blocks or more (a variance of 4).
class prefill_rate {
 public:
  void observe(double blocks, double seconds, common::time_point now, double tau_s) {
    fit_.observe(blocks, seconds, now, tau_s);
  }
  // TTFT samples are noisy (a warm prompt batched with a cold one waits for its prefill), so a
  // slope from a handful of them can be off by a factor: `min_samples` are needed.
  std::optional<double> learned(double min_samples) const { return fit_.slope(min_samples, 4); }

 private:
  linear_fit fit_;
};

// How far samples fall from what was expected of them: a time-weighted mean of the absolute
// residuals, in the samples' unit. Costs closer than their readings' deviations are noise.
class deviation {
 public:
  void observe(double residual, common::time_point now, double tau_s) {
    e_.observe(residual < 0 ? -residual : residual, now, tau_s);
    if (samples_ < settled_after) ++samples_;
  }
  double value() const { return e_.known() ? e_.value() : 0; }
  // The deviation, or `reading` itself (all of it is in doubt) until a few samples have shown
  // how far they stray.
  double of(double reading) const { return samples_ < settled_after ? reading : value(); }
  bool known() const { return e_.known(); }

 private:
  static constexpr unsigned settled_after = 4;
  time_ewma e_;
  unsigned samples_ = 0;
};

}  // namespace meridian::upstream
