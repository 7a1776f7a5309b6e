use cache_core::invalidates;

#[invalidates("trig:{result.id}", "trig:{resul}", "trig:{result.-1}")]
async fn create(name: String) -> Result<u32, String> {
    Ok(name.len() as u32)
}

fn main() {}
