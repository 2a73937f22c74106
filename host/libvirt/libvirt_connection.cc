#include "libvirt/libvirt_connection.h"

#include <regex>
#include <thread>

#include <fmt/format.h>

#include "libvirt/libvirt_api.h"
#include "libvirt/libvirt_domain_xml.h"

namespace sprout {

namespace {
const LibvirtApi& lv() { return libvirt_api(); }
}  // namespace

std::string libvirt_last_error() {
  const char* m = lv().virGetLastErrorMessage();
  return m ? m : "unknown libvirt error";
}

LibvirtConnection::LibvirtConnection(const std::string& uri) : uri_(uri) {
  c_ = lv().virConnectOpen(uri.c_str());
  if (!c_)
    throw LibvirtError(fmt::format("cannot connect to libvirt at {}: {} (is libvirtd running? set libvirt.uri "
                                   "in the spec or pass --uri)",
                                   uri, libvirt_last_error()));
}

LibvirtConnection::~LibvirtConnection() {
  if (c_) lv().virConnectClose(c_);
}

std::optional<LibvirtDomain> LibvirtConnection::lookup(const std::string& name) {
  virDomainPtr d = lv().virDomainLookupByName(c_, name.c_str());
  if (!d) {
    virErrorPtr e = lv().virGetLastError();
    if (e && e->code == VIR_ERR_NO_DOMAIN) {
      lv().virResetLastError();
      return std::nullopt;
    }
    throw LibvirtError(fmt::format("libvirt {}: looking up domain {}: {}", uri_, name, libvirt_last_error()));
  }
  return LibvirtDomain(d, name);
}

LibvirtDomain LibvirtConnection::define(const std::string& xml, const std::string& name) {
  virDomainPtr d = lv().virDomainDefineXML(c_, xml.c_str());
  if (!d) throw LibvirtError(fmt::format("libvirt {}: defining domain {}: {}", uri_, name, libvirt_last_error()));
  return LibvirtDomain(d, name);
}

bool LibvirtConnection::has_kvm() {
  char* caps = lv().virConnectGetCapabilities(c_);
  if (!caps) throw LibvirtError(fmt::format("libvirt {}: reading host capabilities: {}", uri_, libvirt_last_error()));
  std::string s(caps);
  free(caps);
  return s.find("<domain type='kvm'") != std::string::npos;
}

std::optional<uid_t> LibvirtConnection::dac_qemu_uid() {
  char* caps = lv().virConnectGetCapabilities(c_);
  if (!caps) throw LibvirtError(fmt::format("libvirt {}: reading host capabilities: {}", uri_, libvirt_last_error()));
  std::string s(caps);
  free(caps);
  static const std::regex re(R"(<model>dac</model>[\s\S]*?<baselabel type='qemu'>\+([0-9]+):)");
  std::smatch m;
  if (!std::regex_search(s, m, re)) return std::nullopt;
  return static_cast<uid_t>(std::stoul(m[1].str()));
}

std::vector<std::string> LibvirtConnection::all_domain_xml() {
  virDomainPtr* list = nullptr;
  const int n = lv().virConnectListAllDomains(c_, &list, 0);
  if (n < 0) throw LibvirtError(fmt::format("libvirt {}: listing domains: {}", uri_, libvirt_last_error()));
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    for (unsigned flags : {0u, static_cast<unsigned>(VIR_DOMAIN_XML_INACTIVE)})
      if (char* x = lv().virDomainGetXMLDesc(list[i], flags)) {
        out.emplace_back(x);
        free(x);
      } else {
        lv().virResetLastError();  // gone in between: it names nothing any more
      }
    lv().virDomainFree(list[i]);
  }
  free(list);
  return out;
}

LibvirtDomain::~LibvirtDomain() {
  if (d_) lv().virDomainFree(d_);
}

void LibvirtDomain::fail(const std::string& what) const {
  throw LibvirtError(fmt::format("libvirt domain {}: {}: {}", name_, what, libvirt_last_error()));
}

bool LibvirtDomain::is_active() const {
  int r = lv().virDomainIsActive(d_);
  if (r < 0) fail("checking whether it runs");
  return r == 1;
}

bool LibvirtDomain::is_persistent() const {
  int r = lv().virDomainIsPersistent(d_);
  if (r < 0) fail("checking whether it is persistent");
  return r == 1;
}

int LibvirtDomain::id() const {
  unsigned int id = lv().virDomainGetID(d_);
  return id == static_cast<unsigned int>(-1) ? -1 : static_cast<int>(id);
}

std::string LibvirtDomain::uuid() const {
  char buf[VIR_UUID_STRING_BUFLEN];
  if (lv().virDomainGetUUIDString(d_, buf) < 0) fail("reading its uuid");
  return buf;
}

std::string LibvirtDomain::xml(unsigned flags) const {
  char* x = lv().virDomainGetXMLDesc(d_, flags);
  if (!x) fail("reading its XML");
  std::string s(x);
  free(x);
  return s;
}

std::optional<std::string> LibvirtDomain::sprout_metadata() const {
  char* m = lv().virDomainGetMetadata(d_, VIR_DOMAIN_METADATA_ELEMENT, kLibvirtMetadataUri, VIR_DOMAIN_AFFECT_CONFIG);
  if (!m) {
    virErrorPtr e = lv().virGetLastError();
    if (e && e->code == VIR_ERR_NO_DOMAIN_METADATA) {
      lv().virResetLastError();
      return std::nullopt;
    }
    fail("reading its sprout metadata");
  }
  std::string s(m);
  free(m);
  return s;
}

void LibvirtDomain::create() {
  if (lv().virDomainCreate(d_) < 0) fail("starting it");
}

void LibvirtDomain::shutdown() {
  if (lv().virDomainShutdown(d_) < 0) fail("asking it to shut down (ACPI power button)");
}

void LibvirtDomain::destroy() {
  if (lv().virDomainDestroy(d_) < 0) fail("destroying (forcing off) it");
}

void LibvirtDomain::undefine(unsigned flags) {
  if (lv().virDomainUndefineFlags(d_, flags) < 0) fail("undefining it");
}

void LibvirtDomain::set_autostart(bool on) {
  if (lv().virDomainSetAutostart(d_, on ? 1 : 0) < 0) fail(on ? "enabling autostart" : "disabling autostart");
}

std::string LibvirtDomain::stop(std::chrono::seconds timeout) {
  if (!is_active()) return "not running";
  bool asked = timeout.count() > 0;  // no time to shut down: a hard power-off at once
  if (asked && lv().virDomainShutdown(d_) < 0) {
    // It may have stopped by itself in between.
    if (!is_active()) return "shut down";
    asked = false;  // e.g. no ACPI in the guest: go straight to destroy
  }
  if (asked) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!is_active()) return "shut down";
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (lv().virDomainDestroy(d_) < 0) {
    if (!is_active()) return "shut down";
    fail(asked ? "destroying it after the shutdown timeout" : "destroying it");
  }
  return "destroyed";
}

void require_defined_by_sprout(LibvirtDomain& d, const std::string& uri, const char* doing) {
  if (!d.sprout_metadata())
    throw std::runtime_error(fmt::format("libvirt domain {} at {} was not defined by sprout (it has no sprout "
                                         "metadata); not {} it. Rename the VM or manage that domain yourself",
                                         d.name(), uri, doing));
}

}  // namespace sprout
