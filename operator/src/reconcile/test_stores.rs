//! Reflector stores for unit tests (tests only): what a controller's caches hold once their
//! watches have listed, without a watch.

use kube::runtime::{reflector, watcher};

/// A store that has seen its first (complete) list: `objects`.
pub fn filled_store<K>(objects: Vec<K>) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}
