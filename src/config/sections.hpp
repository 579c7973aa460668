// Readers of the cluster sections that feed routing: probe, load_metrics, models, latency and
// outlier. Used while loading, on the loading thread.
#pragma once

#include "config/reader.hpp"

namespace meridian::config {

void read_probe(const reader& r, const YAML::Node& n, const std::string& k, probe_config& out);
void read_load_metrics(const reader& r, const YAML::Node& n, const std::string& k,
                       load_metrics_config& out);
void read_models(const reader& r, const YAML::Node& n, const std::string& k, models_config& out);
void read_latency(const reader& r, const YAML::Node& n, const std::string& k, latency_config& out);
void read_prefix_affinity(const reader& r, const YAML::Node& n, const std::string& k,
                          prefix_affinity_config& out);
void read_outlier(const reader& r, const YAML::Node& n, const std::string& k, outlier_config& out);

}  // namespace meridian::config
