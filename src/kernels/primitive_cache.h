// A map from a shape key to a oneDNN primitive (or any value) made on first use and never changed
// afterwards: lookups and insertions take a lock, the values are used without one (oneDNN
// primitives may be executed by several threads at once). A cache, not state: what a call computes
// does not depend on what earlier calls left in it.
#pragma once
#include <map>
#include <mutex>

namespace sdpal::k {

template <class Key, class Value>
class PrimitiveCache {
 public:
  // The value for `key`, made by make() the first time (outside the lock, so that making one does
  // not hold up other shapes; if two callers race, the first to insert wins).
  template <class Make>
  const Value& get(const Key& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    Value v = make();
    std::lock_guard<std::mutex> lock(mu_);
    return map_.emplace(key, std::move(v)).first->second;  // std::map: references stay valid
  }

 private:
  std::mutex mu_;
  std::map<Key, Value> map_;
};

}  // namespace sdpal::k
