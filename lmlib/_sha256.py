"""SHA-256 of every data file the book uses, keyed by path relative to the data folder; the
sums of the files as published upstream, so one table checks a download, a cached copy and a
folder of copies alike. Written by ``python -m booktools.checksums FOLDER``.
"""

SHA256: dict[str, str] = {
    "tinyshakespeare/input.txt": (
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    ),
    "sst2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "sst2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "chinese-poetry/全唐诗/poet.tang.0.json": (
        "4f88f429938082523cdc72a1612bd7a7c3e3f7a33f8192c61ae51340efc3c92d"
    ),
    "chinese-poetry/全唐诗/poet.tang.1000.json": (
        "6e703b8d8dcedbd6110f6d48d043665ca2131db2035a5bfcef5e59a19aeb6d75"
    ),
    "chinese-poetry/全唐诗/poet.tang.10000.json": (
        "b97d1c5509ab62f5b433dee2020c11c4deda4542e276683d1ada6619c34c2113"
    ),
    "chinese-poetry/全唐诗/poet.tang.11000.json": (
        "9adf1835246053c821d99af39ce9092e14a94e1baf91740098bd9fc6f6f1cd27"
    ),
    "chinese-poetry/全唐诗/poet.tang.12000.json": (
        "ec43d055a219d52ecdb58cd30a8a444189392f0d68b92a41495df1c72c5fd095"
    ),
    "chinese-poetry/全唐诗/poet.tang.13000.json": (
        "eb9c85072d7913bb972e07c72f0123e9d7addca22cfd833cb79a5d74b1c76ebf"
    ),
    "chinese-poetry/全唐诗/poet.tang.14000.json": (
        "1e366dd3fb5a011091524bed36e4edff5d015bf0ddb14143f298515387dbd9a9"
    ),
    "chinese-poetry/全唐诗/poet.tang.15000.json": (
        "0386e58f46517daa3af0e0f385e0223f1efc0dac53afbe8fea64f99074d870b7"
    ),
    "chinese-poetry/全唐诗/poet.tang.16000.json": (
        "1c477aef1fc50523f9baf10f29d2d89201a14c4c73001c1c041d0fe8464d11db"
    ),
    "chinese-poetry/全唐诗/poet.tang.17000.json": (
        "11bac8333b2042975b9844423d113ff2c6fdf701c8b08a5b3aaa6bc9472222de"
    ),
    "chinese-poetry/全唐诗/poet.tang.18000.json": (
        "37543a147d16e3576d5f45ba8f7b8b51fc311bc10eddae9440f16f2d5ae885c2"
    ),
    "chinese-poetry/全唐诗/poet.tang.19000.json": (
        "dea74b41bc807ce2527bb119862a251e3a92b6f69bdf9f98b1434a8336830542"
    ),
    "chinese-poetry/全唐诗/poet.tang.2000.json": (
        "ec28efa7e2ae9cdbbba09f0ed186e32ccae47a325ad1e5816b7ad56071c1665a"
    ),
    "chinese-poetry/全唐诗/poet.tang.20000.json": (
        "8ccf0783888b15bec60d0253e278cd4b67e94a77725df8ed079d4d8062d050b4"
    ),
    "chinese-poetry/全唐诗/poet.tang.21000.json": (
        "bddae814c82bf6a9fd294504aa48794bca5f03e986110739b1577aa811125cbd"
    ),
    "chinese-poetry/全唐诗/poet.tang.22000.json": (
        "d7e7efe3f67415455ae93974a5aa67427e99f6713fde27920bfb657ad3204c4a"
    ),
    "chinese-poetry/全唐诗/poet.tang.23000.json": (
        "220a535a762349ec1beed00f1dc11293ccefc70bda15c5258bbcab208b14337f"
    ),
    "chinese-poetry/全唐诗/poet.tang.24000.json": (
        "2f40a4ec0e4469c29f0f028d7a4ad73b83850aa271be9b63ea0c08de6e094dee"
    ),
    "chinese-poetry/全唐诗/poet.tang.25000.json": (
        "7e7c00ba3f7a95e97de5440f85affa9d54b420d31995b449e97a3e9ea00259f5"
    ),
    "chinese-poetry/全唐诗/poet.tang.26000.json": (
        "74b5bed25622da1611928fdb31297fafadaf2876ce32ddb0c8b6d12d772979f4"
    ),
    "chinese-poetry/全唐诗/poet.tang.27000.json": (
        "11626fcc310bbbcc601f7c8c4d8a664cef4907076cd7ec4f16268ee5b921ba44"
    ),
    "chinese-poetry/全唐诗/poet.tang.28000.json": (
        "86a15affa95859046f869ffd4850886250d1a181e5151b1f096f728fb2d67502"
    ),
    "chinese-poetry/全唐诗/poet.tang.29000.json": (
        "e1a0cffe17b4f109399db38f2b23f9b6668b8ca1c3c24e36d5cbe4f40a925862"
    ),
    "chinese-poetry/全唐诗/poet.tang.3000.json": (
        "9e4ba2323752b6b9fbdba875cdbc6a26636fe0cabc85fd066370d4915952001f"
    ),
    "chinese-poetry/全唐诗/poet.tang.30000.json": (
        "e71996f771d15476bae48751081b473b381774b5d335f6163b183f70a2eaed01"
    ),
    "chinese-poetry/全唐诗/poet.tang.31000.json": (
        "f1efaf172d4f6fa9aaacfa4160feb766189989c3264da6ce3a6d64a7c97097bb"
    ),
    "chinese-poetry/全唐诗/poet.tang.32000.json": (
        "fcb2096245719199249ad23e75eac6997b5a4341564dd1cf73ce8008975b3d74"
    ),
    "chinese-poetry/全唐诗/poet.tang.33000.json": (
        "35abb37f65817ee4630cfeb2db286832e505873c477e12f14693bcd20e920885"
    ),
    "chinese-poetry/全唐诗/poet.tang.34000.json": (
        "4b656a62b6a187792c96a632c7e33f443eabda8b48c4fb5dfdda72cf02003095"
    ),
    "chinese-poetry/全唐诗/poet.tang.35000.json": (
        "a9671b350e58b805fda88b2c17fa0bf3a05313017d28485010e6f60a69bdf945"
    ),
    "chinese-poetry/全唐诗/poet.tang.36000.json": (
        "1c8e71a32743b37d318bf8beb44b8809a8079011231cf3c7106e2c59f03c55b4"
    ),
    "chinese-poetry/全唐诗/poet.tang.37000.json": (
        "4c37d2d92ee6fdd73299ef13c91e17b9cbb11ef59d1e024254db1eceb95dc7ae"
    ),
    "chinese-poetry/全唐诗/poet.tang.38000.json": (
        "08b2ce85e59eac59fe621921b62c15528e9dfb6a102994297703ad67e14aa83f"
    ),
    "chinese-poetry/全唐诗/poet.tang.39000.json": (
        "791d0171fe1dc88cee8424ae0281f495ed0dcdf042f97f2a3fc9b37e05e9426c"
    ),
    "chinese-poetry/全唐诗/poet.tang.4000.json": (
        "b8a7946c879b9658a6c667a4c55f776fae7e5e00a17789ab06b274c1429afc66"
    ),
    "chinese-poetry/全唐诗/poet.tang.40000.json": (
        "851d0c3cb796c7f7c63a7765e28564b2c3be3d9691c9f43f88d4d3c64034b5d8"
    ),
    "chinese-poetry/全唐诗/poet.tang.41000.json": (
        "3c12f59a5103e582eed9fe6ae13affddc030a31e9956efb13cb7768296ba7396"
    ),
    "chinese-poetry/全唐诗/poet.tang.42000.json": (
        "060026beb06028864bce48e8074e2690f92a1dc5a76ee91f98f2d62b5f02a15c"
    ),
    "chinese-poetry/全唐诗/poet.tang.43000.json": (
        "de5e658dccbcf0d2b38312b39a2423459b88ef893830bc145d453d82887a5753"
    ),
    "chinese-poetry/全唐诗/poet.tang.44000.json": (
        "8c6d550818f5390413bc58fbb3af059d3fa4a92264b1bcf84439c2b0bb043985"
    ),
    "chinese-poetry/全唐诗/poet.tang.45000.json": (
        "5177a4747b785f04897c36b77d5e033b11a7bcad759d1557fdb425166b8767f3"
    ),
    "chinese-poetry/全唐诗/poet.tang.46000.json": (
        "287e548147e6959306b74c862a1ebe43cdca39adee34e2c63ae5d3b5eaced1f5"
    ),
    "chinese-poetry/全唐诗/poet.tang.47000.json": (
        "8b43cce475ed43b1105a12a8bdcef32ac22dc056c5f2c616a2976a4103b5d8ac"
    ),
    "chinese-poetry/全唐诗/poet.tang.48000.json": (
        "8df4861e8d7bc114e91d0a5e37d193f662485cd88b8d09289cc5ac9ab243c3ed"
    ),
    "chinese-poetry/全唐诗/poet.tang.49000.json": (
        "418e5a082cb70c4f85ce842affec8828a53f6296882e45339c74d553fc46495e"
    ),
    "chinese-poetry/全唐诗/poet.tang.5000.json": (
        "a0306e6962cff01639ad9a00b042a201b8dec1f30fa5d768a7b112589887861e"
    ),
    "chinese-poetry/全唐诗/poet.tang.50000.json": (
        "894bf4e729932d2b48ba731a48075347cf55626c08ac9f30b2fe412ca9e4e895"
    ),
    "chinese-poetry/全唐诗/poet.tang.51000.json": (
        "9bd1b263807c5c64bca773b76d4861a49af19b76184f88260d6080bb03311928"
    ),
    "chinese-poetry/全唐诗/poet.tang.52000.json": (
        "1124f4b27f46bd1ffaafdda530719eddbe41858778a0a13e4557ea4eb49ffef0"
    ),
    "chinese-poetry/全唐诗/poet.tang.53000.json": (
        "75841062fa939e72ee12669859933c9178b88a5c5492bc9ba84d9ef7c6f1e65a"
    ),
    "chinese-poetry/全唐诗/poet.tang.54000.json": (
        "cd2ba326b80ff8490723ad9fb1ace812306f0e433b74268420165068b0a975ac"
    ),
    "chinese-poetry/全唐诗/poet.tang.55000.json": (
        "3782736dfee847958363d4adeff1236f148aff3726f2964963b17b06dad2f97b"
    ),
    "chinese-poetry/全唐诗/poet.tang.56000.json": (
        "274ad6e13c069e35856e53b5dee6821ad2aa9bf8b2a5f969e2eb1234fe954bca"
    ),
    "chinese-poetry/全唐诗/poet.tang.57000.json": (
        "e04c137b040c1a91e16614178c189d0c30a68e1d4657ea8fde8467601e3ac121"
    ),
    "chinese-poetry/全唐诗/poet.tang.6000.json": (
        "982a21d2b15922b406911f1c825785054314c686da86b2155d7aebb362d22771"
    ),
    "chinese-poetry/全唐诗/poet.tang.7000.json": (
        "a6fb69d7b4343c904dc56ae5aae34facc2478d196b51c37ceba9d1e2f171b342"
    ),
    "chinese-poetry/全唐诗/poet.tang.8000.json": (
        "ac3848e95b02736168003863795de4474838c2d6a71a24ca2a4a280ea5177773"
    ),
    "chinese-poetry/全唐诗/poet.tang.9000.json": (
        "b99d6596e3a1fe1a661652383083f92d196b8baf4e461d087081d5e1e1b7a51f"
    ),
    "chinese-poetry/全唐诗/唐诗三百首.json": (
        "d77a145f7470da2ed2f79515944563c062ffc43fceda07f195a36ead66b7e5c7"
    ),
}
