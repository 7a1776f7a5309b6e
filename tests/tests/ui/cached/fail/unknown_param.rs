use cache_core::cached;

#[cached(key = "{trig_id}:{pgae}", tags = ["trig:{trigid}"], skip = [db])]
async fn unknown_param(trig_id: u32, page: u32) -> u32 {
    trig_id + page
}

fn main() {
    let _ = unknown_param(1, 2);
}
