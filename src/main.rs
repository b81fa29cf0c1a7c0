fn main() {
    println!("floodgate: under construction");
}
