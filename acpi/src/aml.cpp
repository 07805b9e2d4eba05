// AML reader. Grammar references are to the ACPI 6.5 specification, chapter
// 20 ("ACPI Machine Language Specification"). See aml.hpp for the scope.
#include "nvgrace/acpi/aml.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <fmt/format.h>

namespace nvgrace::acpi {

std::string to_string(const Path& p) {
  std::string s = "\\";
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (i) s += '.';
    s += p[i];
  }
  return s;
}

std::optional<Path> parse_path(std::string_view text) {
  if (text.empty() || text.front() != '\\') return std::nullopt;
  text.remove_prefix(1);
  Path p;
  while (!text.empty()) {
    const auto dot = text.find('.');
    std::string seg(text.substr(0, dot));
    if (seg.empty() || seg.size() > 4) return std::nullopt;
    seg.resize(4, '_');
    p.push_back(seg);
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  return p;
}

std::string_view Value::type_name() const {
  switch (data.index()) {
    case 0: return "an integer";
    case 1: return "a string";
    case 2: return "a buffer";
    case 3: return "a package";
    default: return "a name reference";
  }
}

std::string Diagnostic::to_string() const { return fmt::format("{}+{:#x}: {}", table, offset, message); }

const Object* Namespace::find(const Path& p) const {
  auto it = objects.find(acpi::to_string(p));
  return it == objects.end() ? nullptr : &it->second;
}

const Value* Namespace::child_value(const Path& parent, std::string_view name) const {
  Path p = parent;
  p.emplace_back(name);
  const Object* o = find(p);
  return o && o->value ? &*o->value : nullptr;
}

std::string eisa_id_to_string(std::uint32_t id) {
  const std::uint32_t v = __builtin_bswap32(id);
  std::string s;
  s += static_cast<char>(((v >> 26) & 0x1F) + 0x40);
  s += static_cast<char>(((v >> 21) & 0x1F) + 0x40);
  s += static_cast<char>(((v >> 16) & 0x1F) + 0x40);
  s += fmt::format("{:04X}", v & 0xFFFF);
  return s;
}

namespace {

// AML opcodes used below (ACPI 6.5, section 20.3).
enum : std::uint8_t {
  kZero = 0x00, kOne = 0x01, kAlias = 0x06, kName = 0x08, kBytePrefix = 0x0A, kWordPrefix = 0x0B,
  kDWordPrefix = 0x0C, kStringPrefix = 0x0D, kQWordPrefix = 0x0E, kScope = 0x10, kBuffer = 0x11,
  kPackage = 0x12, kVarPackage = 0x13, kMethod = 0x14, kExternal = 0x15, kDualName = 0x2E, kMultiName = 0x2F,
  kExtPrefix = 0x5B, kRoot = 0x5C, kParent = 0x5E, kLocal0 = 0x60, kArg6 = 0x6E, kReturn = 0xA4, kIf = 0xA0,
  kElse = 0xA1, kWhile = 0xA2, kOnes = 0xFF,
};
enum : std::uint8_t {  // after kExtPrefix
  kMutex = 0x01, kEvent = 0x02, kCreateField = 0x13, kRevision = 0x30, kDebug = 0x31, kFatal = 0x32, kTimer = 0x33,
  kOpRegion = 0x80, kField = 0x81, kDevice = 0x82, kProcessor = 0x83, kPowerRes = 0x84, kThermalZone = 0x85,
  kIndexField = 0x86, kBankField = 0x87, kDataRegion = 0x88,
};

// Operand shapes of the expression opcodes the reader skips:
// T TermArg, S SuperName or Target, B byte, W word, D dword, N NameString.
struct Shape {
  std::uint8_t op;
  const char* operands;
};
constexpr std::array kType2 = std::to_array<Shape>({
    {0x70, "TS"}, {0x71, "S"}, {0x72, "TTS"}, {0x73, "TTS"}, {0x74, "TTS"}, {0x75, "S"}, {0x76, "S"},
    {0x77, "TTS"}, {0x78, "TTSS"}, {0x79, "TTS"}, {0x7A, "TTS"}, {0x7B, "TTS"}, {0x7C, "TTS"}, {0x7D, "TTS"},
    {0x7E, "TTS"}, {0x7F, "TTS"}, {0x80, "TS"}, {0x81, "TS"}, {0x82, "TS"}, {0x83, "T"}, {0x84, "TTS"},
    {0x85, "TTS"}, {0x86, "ST"}, {0x87, "S"}, {0x88, "TTS"}, {0x89, "TBTBTT"}, {0x8E, "S"}, {0x90, "TT"},
    {0x91, "TT"}, {0x92, "T"}, {0x93, "TT"}, {0x94, "TT"}, {0x95, "TT"}, {0x96, "TS"}, {0x97, "TS"},
    {0x98, "TS"}, {0x99, "TS"}, {0x9C, "TTS"}, {0x9D, "TS"}, {0x9E, "TTTS"}, {0x9F, ""}, {0xA3, ""},
    {0xA4, "T"}, {0xA5, ""}, {0xCC, ""},
    // Create*Field: source buffer, index, new name.
    {0x8A, "TTN"}, {0x8B, "TTN"}, {0x8C, "TTN"}, {0x8D, "TTN"}, {0x8F, "TTN"},
});
constexpr std::array kExtType2 = std::to_array<Shape>({
    {0x12, "SS"}, {0x13, "TTTN"}, {0x1F, "TTTTTT"}, {0x20, "NS"}, {0x21, "T"}, {0x22, "T"}, {0x23, "SW"},
    {0x24, "S"}, {0x25, "ST"}, {0x26, "S"}, {0x27, "S"}, {0x28, "TS"}, {0x29, "TS"}, {kRevision, ""},
    {kDebug, ""}, {kFatal, "BDT"}, {kTimer, ""},
});

const Shape* shape_of(std::span<const Shape> table, std::uint8_t op) {
  for (const auto& s : table)
    if (s.op == op) return &s;
  return nullptr;
}

// Thrown inside the parser only; caught at block boundaries. Never escapes
// read_namespace.
struct ParseError : std::runtime_error {
  std::size_t offset;
  ParseError(std::size_t off, const std::string& msg) : std::runtime_error(msg), offset(off) {}
};

struct NameString {
  bool absolute = false;
  unsigned up = 0;  // number of '^'
  std::vector<std::string> segs;
  [[nodiscard]] std::string text() const {
    std::string s = absolute ? "\\" : std::string(up, '^');
    for (std::size_t i = 0; i < segs.size(); ++i) s += (i ? "." : "") + segs[i];
    return s;
  }
};

class Reader {
 public:
  // `dsdt_revision`: the DSDT's, which sets the width of every AML integer
  // in the namespace (nullopt: no DSDT read, 64 bits as ACPICA's default).
  Reader(const Table& t, Namespace& ns, std::optional<std::uint8_t> dsdt_revision)
      : t_(t), b_(t.bytes), ns_(ns), dsdt_revision_(dsdt_revision),
        integers32_(dsdt_revision && *dsdt_revision < 2) {}

  void run() {
    const std::size_t end = b_.size();
    pos_ = kTableHeaderSize;
    // The table's top level: an error here stops the table (there is no
    // enclosing block to skip).
    try {
      term_list(end, {});
    } catch (const ParseError& e) {
      error(e.offset, fmt::format("{}; rest of the table skipped", e.what()));
    }
  }

 private:
  // --- diagnostics -------------------------------------------------------
  void error(std::size_t off, std::string msg) { ns_.errors.push_back({t_.source, off, std::move(msg)}); }
  void warn(std::size_t off, std::string msg) { ns_.warnings.push_back({t_.source, off, std::move(msg)}); }
  [[noreturn]] void fail_at(std::size_t off, const std::string& msg) const { throw ParseError(off, msg); }

  // --- bytes ---------------------------------------------------------------
  std::uint8_t byte(std::size_t end) {
    if (pos_ >= end) fail_at(pos_, "unexpected end of data");
    return b_[pos_++];
  }
  std::uint64_t le(std::size_t n, std::size_t end) {
    if (pos_ + n > end) fail_at(pos_, fmt::format("a {}-byte constant runs past the end", n));
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }

  // PkgLength (section 20.2.4): 1-4 bytes, counting from its own first byte.
  // Returns the absolute end offset, checked against the enclosing end.
  std::size_t pkg_length(std::size_t end) {
    const std::size_t start = pos_;
    const std::uint8_t lead = byte(end);
    const unsigned follow = lead >> 6;
    std::size_t len = follow == 0 ? (lead & 0x3Fu) : (lead & 0x0Fu);
    for (unsigned i = 0; i < follow; ++i) len |= static_cast<std::size_t>(byte(end)) << (4 + 8 * i);
    const std::size_t pkg_end = start + len;
    if (len < follow + 1u) fail_at(start, fmt::format("PkgLength {} is shorter than its own encoding", len));
    if (pkg_end > end)
      fail_at(start, fmt::format("PkgLength {:#x} runs past the end of its enclosing block ({:#x} > {:#x})", len,
                                 pkg_end, end));
    return pkg_end;
  }

  // --- names (section 20.2.2) ---------------------------------------------
  std::string name_seg(std::size_t end) {
    if (pos_ + 4 > end) fail_at(pos_, "name segment runs past the end");
    std::string s(reinterpret_cast<const char*>(&b_[pos_]), 4);
    auto lead_ok = [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; };
    auto char_ok = [&](char c) { return lead_ok(c) || (c >= '0' && c <= '9'); };
    if (!lead_ok(s[0]) || !std::all_of(s.begin() + 1, s.end(), char_ok))
      fail_at(pos_, fmt::format("invalid name segment {:02x} {:02x} {:02x} {:02x}", b_[pos_], b_[pos_ + 1],
                                b_[pos_ + 2], b_[pos_ + 3]));
    pos_ += 4;
    return s;
  }

  static bool starts_name(std::uint8_t c) {
    return c == kRoot || c == kParent || c == kDualName || c == kMultiName || (c >= 'A' && c <= 'Z') || c == '_';
  }

  NameString name_string(std::size_t end) {
    NameString n;
    if (pos_ < end && b_[pos_] == kRoot) {
      n.absolute = true;
      ++pos_;
    } else {
      while (pos_ < end && b_[pos_] == kParent) {
        ++n.up;
        ++pos_;
      }
    }
    const std::uint8_t c = byte(end);
    if (c == kZero) return n;  // NullName
    if (c == kDualName) {
      n.segs.push_back(name_seg(end));
      n.segs.push_back(name_seg(end));
    } else if (c == kMultiName) {
      const unsigned count = byte(end);
      if (count == 0) fail_at(pos_ - 1, "MultiNamePath with 0 segments");
      for (unsigned i = 0; i < count; ++i) n.segs.push_back(name_seg(end));
    } else {
      --pos_;
      n.segs.push_back(name_seg(end));
    }
    return n;
  }

  // Where a definition's name lands, relative to the current scope.
  Path resolve(const NameString& n, const Path& scope, std::size_t at) const {
    Path p = n.absolute ? Path{} : scope;
    if (n.up > p.size()) fail_at(at, fmt::format("name {} climbs above the root", n.text()));
    p.resize(p.size() - n.up);
    p.insert(p.end(), n.segs.begin(), n.segs.end());
    return p;
  }

  // A reference: single-segment relative names are searched toward the root
  // (section 5.3, "Search rules").
  const Object* lookup(const NameString& n, const Path& scope) const {
    if (n.absolute || n.up > 0 || n.segs.size() != 1) {
      if (n.up > scope.size() && !n.absolute) return nullptr;
      Path p = n.absolute ? Path{} : Path(scope.begin(), scope.end() - static_cast<std::ptrdiff_t>(n.up));
      p.insert(p.end(), n.segs.begin(), n.segs.end());
      return ns_.find(p);
    }
    for (Path p = scope;; p.pop_back()) {
      Path q = p;
      q.push_back(n.segs[0]);
      if (const Object* o = ns_.find(q)) return o;
      if (p.empty()) return nullptr;
    }
  }

  // Scope and Device targets must exist (or be declared External): loading a
  // table that opens a scope nowhere fails on a real OS too.
  bool exists(const Path& p) const {
    static const std::array<const char*, 5> predefined{"_SB_", "_GPE", "_PR_", "_TZ_", "_SI_"};
    if (p.empty()) return true;
    if (p.size() == 1 && std::find(predefined.begin(), predefined.end(), p[0]) != predefined.end()) return true;
    return ns_.find(p) != nullptr;
  }

  void define(ObjectKind kind, const Path& p, std::size_t at, std::optional<Value> v = std::nullopt,
              unsigned args = 0, bool external = false) {
    auto key = to_string(p);
    Object obj{kind, external, p, t_.source, at, std::move(v), args};
    auto it = ns_.objects.find(key);
    if (it == ns_.objects.end()) {
      ns_.objects.emplace(std::move(key), std::move(obj));
    } else if (it->second.external && !external) {
      it->second = std::move(obj);  // the definition an External promised
    } else if (!external && kind != ObjectKind::scope && it->second.kind != ObjectKind::scope) {
      warn(at, fmt::format("{} is defined again (first in {}+{:#x}); the first definition is kept", key,
                           it->second.table, it->second.offset));
    }
  }

  // --- data objects (section 20.2.3) --------------------------------------
  Value data_object(std::size_t end, int depth) {
    if (depth > kMaxNesting) fail_at(pos_, fmt::format("data nested deeper than {} levels", kMaxNesting));
    const std::size_t at = pos_;
    const std::uint8_t op = byte(end);
    switch (op) {
      case kZero: return {std::uint64_t{0}};
      case kOne: return {std::uint64_t{1}};
      // Integers are 32 bits wide where the DSDT's revision is below 2
      // (sections 5.2.11.1, 19.6.97): the DSDT decides for every table, as
      // ACPICA - Linux's interpreter - sets the width from the DSDT alone.
      case kOnes: return {integers32_ ? std::uint64_t{0xFFFFFFFF} : ~std::uint64_t{0}};
      case kBytePrefix: return {le(1, end)};
      case kWordPrefix: return {le(2, end)};
      case kDWordPrefix: return {le(4, end)};
      case kQWordPrefix: {
        const std::uint64_t v = le(8, end);
        if (integers32_ && v > 0xFFFFFFFF) {
          warn(at, fmt::format("64-bit constant {:#x} read as {:#x}: the DSDT is revision {}, so every AML integer is "
                               "32 bits wide, and Linux (ACPICA) cuts it the same way",
                               v, v & 0xFFFFFFFF, *dsdt_revision_));
          return {v & 0xFFFFFFFF};
        }
        return {v};
      }
      case kStringPrefix: {
        std::string s;
        for (;;) {
          const std::uint8_t c = byte(end);
          if (c == 0) break;
          s += static_cast<char>(c);
        }
        return {std::move(s)};
      }
      case kBuffer: {
        const std::size_t bend = pkg_length(end);
        const std::uint64_t size = integer_arg(bend, depth + 1);
        Buffer buf;
        const std::size_t avail = bend - pos_;
        buf.bytes.assign(b_.begin() + static_cast<std::ptrdiff_t>(pos_), b_.begin() + static_cast<std::ptrdiff_t>(bend));
        if (size > avail && size < (1u << 20)) buf.bytes.resize(static_cast<std::size_t>(size), 0);  // zero-filled
        pos_ = bend;
        return {std::move(buf)};
      }
      case kPackage:
      case kVarPackage: {
        const std::size_t pend = pkg_length(end);
        std::uint64_t count = op == kPackage ? byte(pend) : integer_arg(pend, depth + 1);
        Package pkg;
        while (pos_ < pend) {
          if (starts_name(b_[pos_])) {
            pkg.push_back({NameRef{name_string(pend).text()}});
          } else {
            pkg.push_back(data_object(pend, depth + 1));
          }
        }
        if (pkg.size() > count) warn(at, fmt::format("package holds {} elements, its count says {}", pkg.size(), count));
        return {std::move(pkg)};
      }
      case kExtPrefix:
        if (byte(end) == kRevision) return {std::uint64_t{0x20200925}};
        [[fallthrough]];
      default:
        pos_ = at;
        fail_at(at, fmt::format("opcode {:#04x} is not a data object", op));
    }
  }

  // A TermArg that must be a constant integer (buffer sizes, package counts).
  std::uint64_t integer_arg(std::size_t end, int depth) {
    const std::size_t at = pos_;
    if (pos_ < end && (b_[pos_] <= kOne || b_[pos_] == kOnes || (b_[pos_] >= kBytePrefix && b_[pos_] <= kQWordPrefix))) {
      Value v = data_object(end, depth);
      if (const auto* i = v.integer()) return *i;
    }
    pos_ = at;
    skip_term_arg(end, {}, depth);
    return 0;  // not a constant: size unknown
  }

  // --- skipping expressions -----------------------------------------------
  void skip_operands(const char* shape, std::size_t end, const Path& scope, int depth) {
    for (const char* s = shape; *s; ++s) {
      switch (*s) {
        case 'T':
        case 'S': skip_term_arg(end, scope, depth + 1); break;
        case 'B': le(1, end); break;
        case 'W': le(2, end); break;
        case 'D': le(4, end); break;
        case 'N': name_string(end); break;
      }
    }
  }

  void skip_term_arg(std::size_t end, const Path& scope, int depth) {
    if (depth > kMaxNesting) fail_at(pos_, fmt::format("expression nested deeper than {} levels", kMaxNesting));
    if (pos_ >= end) fail_at(pos_, "unexpected end of data in an expression");
    const std::size_t at = pos_;
    const std::uint8_t op = b_[pos_];
    if (op == kZero || op == kOne || op == kOnes || (op >= kBytePrefix && op <= kQWordPrefix) || op == kBuffer ||
        op == kPackage || op == kVarPackage) {
      data_object(end, depth);
      return;
    }
    if (op >= kLocal0 && op <= kArg6) {
      ++pos_;
      return;
    }
    if (starts_name(op)) {
      // A method invocation takes as many TermArgs as the method has
      // arguments; an unknown name is a plain reference.
      const NameString n = name_string(end);
      if (const Object* o = lookup(n, scope); o && o->kind == ObjectKind::method)
        for (unsigned i = 0; i < o->method_args; ++i) skip_term_arg(end, scope, depth + 1);
      return;
    }
    ++pos_;
    if (op == kExtPrefix) {
      const std::uint8_t ext = byte(end);
      if (const Shape* s = shape_of(kExtType2, ext)) return skip_operands(s->operands, end, scope, depth);
      fail_at(at, fmt::format("unknown opcode 0x5b {:#04x} in an expression", ext));
    }
    if (const Shape* s = shape_of(kType2, op)) return skip_operands(s->operands, end, scope, depth);
    fail_at(at, fmt::format("unknown opcode {:#04x}", op));
  }

  // --- namespace terms ----------------------------------------------------
  // Parses a block body [pos, end). An error inside is recorded and the rest
  // of the block skipped, so the enclosing block carries on.
  void block(std::size_t end, const Path& scope, int depth) {
    try {
      term_list(end, scope, depth);
    } catch (const ParseError& e) {
      error(e.offset, fmt::format("{}; rest of {} skipped", e.what(), to_string(scope)));
      pos_ = end;
    }
  }

  void term_list(std::size_t end, const Path& scope, int depth = 0) {
    if (depth > kMaxNesting) fail_at(pos_, fmt::format("scopes nested deeper than {} levels", kMaxNesting));
    while (pos_ < end) term(end, scope, depth);
  }

  void open_block(ObjectKind kind, std::size_t end, const Path& scope, int depth, std::size_t fixed_bytes) {
    const std::size_t at = pos_ - (kind == ObjectKind::scope ? 1 : 2);
    const std::size_t bend = pkg_length(end);
    const std::size_t name_at = pos_;
    const Path p = resolve(name_string(bend), scope, name_at);
    le(fixed_bytes, bend);  // Processor / PowerResource header fields
    // A Scope or Device under a path the tables read do not define (an SSDT
    // read without its DSDT; iasl emits External only for methods) is kept,
    // with a warning: the path is opened as an implicit scope.
    Path parent(p.begin(), p.end() - (p.empty() ? 0 : 1));
    const Path& needed = kind == ObjectKind::scope ? p : parent;
    if (!exists(needed)) {
      warn(at, fmt::format("{} {} refers to {}, which the tables read do not define; opened as an implicit scope",
                           kind == ObjectKind::scope ? "Scope" : "Device", to_string(p), to_string(needed)));
      for (Path q = needed; !q.empty() && !exists(q); q.pop_back()) define(ObjectKind::scope, q, at);
    }
    define(kind, p, at);
    block(bend, p, depth + 1);
    pos_ = bend;
  }

  void term(std::size_t end, const Path& scope, int depth) {
    const std::size_t at = pos_;
    const std::uint8_t op = byte(end);
    switch (op) {
      case kScope: return open_block(ObjectKind::scope, end, scope, depth, 0);
      case kName: {
        const Path p = resolve(name_string(end), scope, at + 1);
        define(ObjectKind::name, p, at, data_object(end, 0));
        return;
      }
      case kMethod: {
        const std::size_t mend = pkg_length(end);
        const Path p = resolve(name_string(mend), scope, at + 1);
        const unsigned flags = byte(mend);
        std::optional<Value> ret = constant_return(mend, p);
        define(ObjectKind::method, p, at, std::move(ret), flags & 7u);
        pos_ = mend;
        return;
      }
      case kExternal: {
        const Path p = resolve(name_string(end), scope, at + 1);
        // ObjectType 6 is a Device, 8 a Method (section 19.6.45).
        const unsigned type = byte(end);
        const unsigned args = byte(end);
        const ObjectKind kind = type == 8 ? ObjectKind::method : type == 6 ? ObjectKind::device : ObjectKind::other;
        define(kind, p, at, std::nullopt, args, true);
        return;
      }
      case kAlias:
        name_string(end);
        name_string(end);
        return;
      case kIf:
      case kElse:
      case kWhile:
        // Conditional definitions are not evaluated (no interpreter).
        pos_ = pkg_length(end);
        return;
      case kExtPrefix: {
        const std::uint8_t ext = byte(end);
        switch (ext) {
          case kDevice: return open_block(ObjectKind::device, end, scope, depth, 0);
          case kProcessor: return open_block(ObjectKind::other, end, scope, depth, 6);
          case kPowerRes: return open_block(ObjectKind::other, end, scope, depth, 3);
          case kThermalZone: return open_block(ObjectKind::other, end, scope, depth, 0);
          case kField:
          case kIndexField:
          case kBankField: pos_ = pkg_length(end); return;
          case kOpRegion:
            name_string(end);
            le(1, end);
            skip_term_arg(end, scope, 0);
            skip_term_arg(end, scope, 0);
            return;
          case kMutex: name_string(end); le(1, end); return;
          case kEvent: name_string(end); return;
          case kDataRegion: skip_operands("NTTT", end, scope, 0); return;
          default: pos_ = at; break;
        }
        break;
      }
      default: pos_ = at; break;
    }
    // Anything else is a statement at scope level (Store, Notify, a method
    // call, Create*Field, ...): skip it as an expression.
    skip_term_arg(end, scope, 0);
  }

  // Method(X) { ... Return(<constant>) } at the top level of the body (R4).
  // Name() objects declared in the body may be returned by name.
  std::optional<Value> constant_return(std::size_t end, const Path& method) {
    std::map<std::string, Value> locals;
    try {
      while (pos_ < end) {
        const std::uint8_t op = b_[pos_];
        if (op == kReturn) {
          ++pos_;
          if (pos_ < end && starts_name(b_[pos_])) {
            const NameString n = name_string(end);
            if (n.segs.size() == 1 && locals.count(n.segs[0])) return locals[n.segs[0]];
            Path parent(method.begin(), method.end() - 1);
            if (const Object* o = lookup(n, parent); o && o->kind == ObjectKind::name && o->value) return o->value;
            return std::nullopt;
          }
          if (pos_ < end && (b_[pos_] >= kLocal0 && b_[pos_] <= kArg6)) return std::nullopt;
          return data_object(end, 0);
        }
        if (op == kName) {
          ++pos_;
          const NameString n = name_string(end);
          Value v = data_object(end, 0);
          if (n.segs.size() == 1) locals[n.segs[0]] = std::move(v);
          continue;
        }
        if (op == kIf || op == kElse || op == kWhile) {
          ++pos_;
          pos_ = pkg_length(end);
          continue;
        }
        skip_term_arg(end, method, 0);
      }
    } catch (const ParseError&) {
      // Method bodies may use constructs the reader does not follow; that only
      // matters for the methods nvgrace reads, which say so when looked up.
    }
    return std::nullopt;
  }

  const Table& t_;
  std::span<const std::uint8_t> b_;
  Namespace& ns_;
  std::optional<std::uint8_t> dsdt_revision_;
  bool integers32_ = false;
  std::size_t pos_ = 0;
};

}  // namespace

Namespace read_namespace(std::span<const Table> tables) {
  Namespace ns;
  std::optional<std::uint8_t> dsdt_revision;
  for (const auto& t : tables)
    if (t.header.signature == "DSDT") {
      dsdt_revision = t.header.revision;
      break;
    }
  for (const auto& t : tables) {
    if (t.header.signature != "DSDT" && t.header.signature != "SSDT") {
      ns.warnings.push_back({t.source, 0, fmt::format("{} table ignored: only DSDT and SSDT hold AML", t.header.signature)});
      continue;
    }
    if (!t.checksum_ok) ns.warnings.push_back({t.source, 9, "bad checksum; reading the table anyway"});
    Reader(t, ns, dsdt_revision).run();
  }
  return ns;
}

}  // namespace nvgrace::acpi
