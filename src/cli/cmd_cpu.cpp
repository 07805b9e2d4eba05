// `nvgrace cpu`: the named arm64 CPU models (R34-R36) - the table of models,
// the fields one sets and where each value comes from, and on an arm64 KVM
// host, per field: the model's value, the host's, whether KVM lets it be
// written, and the verdict. "Can this host run grace-v1, and what will the
// guest see."
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "nvgrace/cpu/model.hpp"
#include "nvgrace/vm/cpu_host.hpp"

namespace nvgrace::cli {
namespace {

namespace cpu = nvgrace::cpu;

std::string vls_text(const std::optional<cpu::SveVls>& vls, std::string_view none) {
  if (!vls) return std::string(none);
  std::string s;
  for (unsigned vq = 1; vq <= vls->size() * 64; ++vq)
    if ((*vls)[(vq - 1) / 64] >> ((vq - 1) % 64) & 1) s += fmt::format("{}{}", s.empty() ? "" : "+", vq * 128);
  return s.empty() ? "none" : s;
}

std::string hex_or(const std::optional<std::uint64_t>& v, std::string_view none) {
  return v ? fmt::format("{:#x}", *v) : std::string(none);
}

class CpuCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand(
        "cpu", "The named arm64 CPU models (R34-R36): list them, show one's fields, or check one against this host's "
               "KVM. Exit 0: listed, or the model runs here; 1: it cannot run here (each field named), or no arm64 "
               "KVM to check against");
    model_opt_ = cmd_->add_option("--model", spec_,
                                  "host, neoverse-v2-v1 or grace-v1, optionally with ,feat_FIELD=VALUE, ,sve=128+256, "
                                  ",midr=host|0xVALUE")
                     ->type_name("MODEL");
    cmd_->add_flag("--check", check_,
                   "Check the model against this host's KVM (arm64 only): per field the model's value, the host's, "
                   "writable or not, and the verdict");
    cmd_->add_flag("--json", json_, "Print JSON");
    return cmd_;
  }

  int run() override {
    if (model_opt_->empty() && !check_) return list();
    if (model_opt_->empty()) spec_ = "grace-v1";
    auto m = cpu::resolve(spec_);
    if (!m) return usage_error("--model: {}", m.error().message);
    if (!check_) return show(*m);
    return check(*m);
  }

 private:
  int list() {
    if (json_) {
      nlohmann::ordered_json j = nlohmann::ordered_json::array();
      for (const auto& model : cpu::models()) {
        auto r = cpu::resolve(model.name);
        j.push_back({{"name", model.name},
                     {"parent", model.parent.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(model.parent)},
                     {"description", model.description},
                     {"fields", r ? r->set_fields.size() : 0},
                     {"sve_bits", r ? vls_text(r->sve, "host") : ""},
                     {"midr", r ? hex_or(r->midr, "host") : ""}});
      }
      std::cout << j.dump(2) << '\n';
      return kExitOk;
    }
    // 80 columns: the description goes on its own line.
    auto row = [](std::string_view name, std::string_view parent, std::size_t fields, const std::string& sve,
                  const std::string& midr, std::string_view description) {
      std::cout << fmt::format("{:<16} {:<16} {:>6}  {:<14} {}\n    {}\n", name, parent, fields, sve, midr, description);
    };
    std::cout << fmt::format("{:<16} {:<16} {:>6}  {:<14} {}\n", "model", "parent", "fields", "SVE bits", "MIDR_EL1");
    row("host", "-", 0, "host's", "host's", "the ID registers KVM offers, unchanged");
    for (const auto& model : cpu::models()) {
      auto r = cpu::resolve(model.name);
      if (!r) return failure("cpu", "{}", r.error().message);
      row(model.name, model.parent.empty() ? "-" : model.parent, r->set_fields.size(), vls_text(r->sve, "host's"),
          hex_or(r->midr, "host's"), model.description);
    }
    std::cout << "Fields, values and their sources: nvgrace cpu --model NAME; docs/cpu-models.md.\n";
    return kExitOk;
  }

  int show(const cpu::ResolvedModel& m) {
    const auto models = cpu::ancestry(m.name);
    if (json_) {
      nlohmann::ordered_json fields = nlohmann::ordered_json::array();
      for (const auto* f : m.set_fields)
        fields.push_back({{"register", f->reg}, {"field", f->name}, {"shift", f->shift}, {"width", f->width},
                          {"signed", f->is_signed}, {"policy", cpu::policy_name(f->policy)},
                          {"value", *m.value(*f)}, {"set_by", cpu::set_by(models, m, *f)}});
      nlohmann::ordered_json j{{"model", m.name}, {"spec", m.spec}, {"midr", hex_or(m.midr, "host")},
                               {"sve_bits", vls_text(m.sve, "host")}, {"fields", std::move(fields)}};
      std::cout << j.dump(2) << '\n';
      return kExitOk;
    }
    std::cout << fmt::format("{}: MIDR_EL1 {}, SVE vector lengths {} bits, {} ID-register fields set\n", m.spec,
                             hex_or(m.midr, "the host's"), vls_text(m.sve, "the host's"), m.set_fields.size());
    if (m.set_fields.empty()) {
      std::cout << "The guest sees the host's ID registers as KVM offers them.\n";
      return kExitOk;
    }
    std::cout << fmt::format("  {:<18} {:<10} {:>6}  {:<20} {}\n", "register", "field", "value", "policy", "set by");
    for (const auto* f : m.set_fields)
      std::cout << fmt::format("  {:<18} {:<10} {:>6}  {:<20} {}\n", f->reg, f->name, fmt::format("{:#x}", *m.value(*f)),
                               cpu::policy_name(f->policy), cpu::set_by(models, m, *f));
    return kExitOk;
  }

  int check(const cpu::ResolvedModel& m) {
    auto r = vm::check_cpu_on_host(m);
    if (!r) return failure("cpu", "{}", r.error().message);
    unsigned refused = 0, changed = 0;
    for (const auto& c : r->checks) {
      refused += !c.ok();
      changed += c.verdict == cpu::Verdict::set;
    }
    auto writable_text = [](const cpu::FieldCheck& c) { return c.writable ? "yes" : "no"; };
    if (json_) {
      nlohmann::ordered_json fields = nlohmann::ordered_json::array();
      for (const auto& c : r->checks)
        fields.push_back({{"register", c.reg}, {"field", c.field}, {"model", c.model}, {"host", c.host},
                          {"writable", c.writable}, {"verdict", cpu::verdict_name(c.verdict)}, {"why", c.why}});
      nlohmann::ordered_json j{{"model", m.spec},
                               {"kernel", r->kernel},
                               {"runs", refused == 0},
                               {"fields", std::move(fields)},
                               {"host_sve_bits", vls_text(r->host.sve, "none")},
                               {"cacheable_pfnmap", {{"answer", r->cacheable_pfnmap}, {"meaning", r->cacheable_pfnmap_meaning}}}};
      std::cout << j.dump(2) << '\n';
      return refused ? kExitFailure : kExitOk;
    }
    std::cout << fmt::format("{} against this host's KVM (Linux {}), vector lengths offered {}:\n", m.spec, r->kernel,
                             vls_text(r->host.sve, "none (no SVE)"));
    std::cout << fmt::format("  {:<18} {:<10} {:>12} {:>12}  {:<8} {}\n", "register", "field", "model", "host",
                             "writable", "verdict");
    // Field values in hex; for SVE_VLS the largest vector length in bits.
    auto value = [](const cpu::FieldCheck& c, std::uint64_t v) {
      return c.reg == "SVE_VLS" ? fmt::format("{} bits", v) : fmt::format("{:#x}", v);
    };
    for (const auto& c : r->checks)
      std::cout << fmt::format("  {:<18} {:<10} {:>12} {:>12}  {:<8} {}{}{}\n", c.reg, c.field, value(c, c.model),
                               value(c, c.host), writable_text(c),
                               cpu::verdict_name(c.verdict), c.why.empty() ? "" : ": ", c.why);
    std::cout << fmt::format("R33 KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED = {}: {}\n", r->cacheable_pfnmap,
                             r->cacheable_pfnmap_meaning);
    if (refused) {
      std::cout << fmt::format("{} cannot run here: {} of {} checks refused\n", m.spec, refused, r->checks.size());
      return kExitFailure;
    }
    std::cout << fmt::format("{} runs here: {} checks, {} as the host's, {} set by the model; every other field "
                             "keeps the host's value\n",
                             m.spec, r->checks.size(), r->checks.size() - changed, changed);
    return kExitOk;
  }

  CLI::App* cmd_ = nullptr;
  CLI::Option* model_opt_ = nullptr;
  std::string spec_;
  bool check_ = false;
  bool json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_cpu_command() { return std::make_unique<CpuCommand>(); }

}  // namespace nvgrace::cli
