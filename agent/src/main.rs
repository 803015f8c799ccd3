fn main() {
    println!("coolmesh (being written)");
}
