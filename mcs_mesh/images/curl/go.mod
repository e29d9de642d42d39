module example.invalid/mcs-curl

go 1.24
