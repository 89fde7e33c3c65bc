let k = 1; in
assert builtins.isString k;
{ }
