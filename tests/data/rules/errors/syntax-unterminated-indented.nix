{
  a = ''
    never closed
}
