package dataplatform.local;

import org.apache.hadoop.fs.LocalFileSystem;

/**
 * file:// for the local platform's Spark (fs.file.impl): Hadoop's LocalFileSystem, checksums
 * and all, over NioRawLocalFileSystem (which says why). A LocalFileSystem still, as
 * FileSystem.getLocal() callers such as S3A's staging committer require.
 */
public class NioLocalFileSystem extends LocalFileSystem {
  public NioLocalFileSystem() {
    super(new NioRawLocalFileSystem());
  }
}
