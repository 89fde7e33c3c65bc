let b = builtins; in
{
  "s.age" = {
    publicKeys = [ ];
    sep = b.concatStringsSep ", " [ "a" "b" "c" ];
    rep = b.replaceStrings [ "a" "bb" "" ] [ "A" "B" "-" ] "abbac";
    rep2 = b.replaceStrings [ "" ] [ "X" ] "abc";
    sub = [ (b.substring 1 3 "abcdef") (b.substring 4 (-1) "abcdef") (b.substring 10 2 "abc") ];
    len = b.stringLength "hello";
    base = [ (b.baseNameOf "/a/b/c.age") (b.baseNameOf "a/b/") (b.baseNameOf "") (b.baseNameOf "x") ];
    dir = [ (b.dirOf "/a/b/c") (b.dirOf "a") (b.dirOf "/a") ];
    json = b.toJSON { b = [ 1 2.5 "s\n\"" null true ]; a = { }; };
    parsed = b.fromJSON ''{"x": [1, 2.5, "y", null, false], "z": {"w": -3}}'';
    seq = b.seq 1 "seq";
    deep = b.deepSeq [ 1 2 ] "deep";
    tr = b.trace "tracing works" "traced";
    ts = [ (toString null) (toString true) (toString false) (toString 42) (toString "s") ];
    add = [ (b.add 1 2) (b.sub 5 3) (b.mul 2 4) (b.div 9 2) (b.lessThan 1 2) ];
    hashes = [ (b.hashString "sha256" "k") (b.hashString "sha512" "") ];
    tries = [ (b.tryEval (throw "x")) (b.tryEval (assert false; 1)) (b.tryEval 2) (let t = b.tryEval (throw "again"); in t.success || t.success) ];
    matches = [ (b.match "(.*)\\.age" "db.age") (b.match "a" "b") (b.match "([a-z]+)(-([0-9]+))?" "web") (b.match "[[:alpha:]]+" "abc") ];
    splits = [ (b.split "," "a,b,,c") (b.split "(a)|b" "abc") (b.split "x" "") (b.split "([0-9])" "a1b2") ];
    filtered = b.filter (n: b.match ".*\\.pub" n != null) [ "a.pub" "b.age" "c.pub" ];
    bits = [ (b.bitAnd 12 10) (b.bitOr 12 10) (b.bitXor 12 10) ];
  };
}
